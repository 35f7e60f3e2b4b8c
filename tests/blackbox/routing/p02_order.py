# Queue order: priority then FIFO; positions exact and change as others leave.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=1)  # offline
    cs = []
    for i, p in enumerate([0, 5, 0, 5, 1, 0]):
        c = t.post(f'u{i}', priority=p); o.lab(c.name, f'c{i}p{p}'); cs.append(c)
        o('post', o.c(c))
    for c in cs: o('now', o.c(t.conv(c.name)))
    # remove c1 (prio 5, first) by channel close
    n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=cs[1].name, request_id=rid()))
    for c in cs: o('after close c1', o.c(t.conv(c.name)))
    # agent online: takes best
    t.status('a1', S.AGENT_STATUS_ONLINE)
    time.sleep(0.5)
    for c in cs: o('after online', o.c(t.conv(c.name)))
    o('unaccepted a1', [o.lab(c.name) for c in t.unaccepted('a1')])
compare(probe)
