"""Differential under load: 300 customers on one stream, keyword/message-received/queue/offline/
auto-accept replies; then agents come online and drain; compare counts per reply kind."""
from rlib import *
from collections import Counter

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(
        auto_accept=A.AutoAcceptReply(texts=['AA'], also_from_queue=True),
        queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q']), A.QueueRule(above=100, texts=['Q100'])]),
        offline=A.OfflineReply(texts=['OFF'])),
        keywords=[A.KeywordRule(keywords=['refund'], texts=['KW'])],
        message_received=A.MessageReceivedReply(texts=['MR']))
    e = Env(n, 't1', r, st)
    for i in range(10): e.agent(f'a{i}', cap=10, online=False)
    N = 300
    def msgs(tag):
        for i in range(N):
            yield C.PostMessageRequest(customer=e.u(f'c{i}'), channel=CH.CHANNEL_WEB,
                                       text=('refund' if i % 3 == 0 and tag == 'a' else 'hi'), request_id=f'{tag}{i}')
    errs1 = sum(1 for x in n.chan.PostMessages(msgs('a')) if x.WhichOneof('result') == 'error')
    e.settle(1)
    e.status('a0', CH.AGENT_STATUS_ONLINE); e.settle(1)   # a0 takes 10 (from queue)
    errs2 = sum(1 for x in n.chan.PostMessages(msgs('b')) if x.WhichOneof('result') == 'error')
    e.settle(1)
    for i in range(1, 10): e.status(f'a{i}', CH.AGENT_STATUS_ONLINE)
    e.settle(2)
    cnt = Counter(k for k, _ in e.outs()); cnt.update(t for k, t in e.outs() if k == 'QUEUE')
    return errs1, errs2, dict(sorted(cnt.items()))
report('load differential', diff_run(run), (0, 0, {'AUTO_ACCEPT': 100, 'KEYWORD': 100, 'MESSAGE_RECEIVED': 490, 'OFFLINE': 200, 'Q': 100, 'Q100': 190, 'QUEUE': 290}))
