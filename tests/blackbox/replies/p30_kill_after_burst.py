"""kill -9 right after a burst of answered messages: every automatic reply appears exactly once
in StreamOutbound after restart (none lost, none doubled), and pending timers still fire."""
from rlib import *
from collections import Counter

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(
        auto_accept=A.AutoAcceptReply(texts=['AA']),
        queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q'])]),
        agent_no_response=A.TimedReply(after=dur(2), texts=['ANR'])),
        message_received=A.MessageReceivedReply(texts=['MR']))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=20)
    N = 60
    reqs = (C.PostMessageRequest(customer=e.u(f'c{i}'), channel=CH.CHANNEL_WEB, text='hi', request_id=f'r{i}') for i in range(N))
    errs = sum(1 for x in n.chan.PostMessages(reqs) if x.WhichOneof('result') == 'error')
    e.close(); n.restart(kill=True)
    time.sleep(4)
    o = Collector(n, 't1', 'out'); time.sleep(1.5)
    per = Counter((m.conversation, KIND[m.reply_kind]) for m in o.snap())
    dup = {k: v for k, v in per.items() if v > 1}
    kinds = Counter(KIND[m.reply_kind].replace('REPLY_KIND_', '') for m in o.snap())
    o.close()
    return errs, dict(sorted(kinds.items())), len(dup)
report('burst then kill -9', diff_run(run), (0, {'AGENT_NO_RESPONSE': 20, 'AUTO_ACCEPT': 20, 'MESSAGE_RECEIVED': 40, 'QUEUE': 40}, 0))
