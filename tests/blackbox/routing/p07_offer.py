# Offer mode: offer, accept, decline keeps place, timeout keeps place, not-responding policy.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r, not_responding_after=2, not_responding_status=S.AGENT_STATUS_AWAY)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(2))
    t.agent('a1', ['g1'], cap=1)
    cs = []
    for i in range(3):
        c = t.post(f'u{i}'); o.lab(c.name, f'c{i}'); cs.append(c)
    t.status('a1', S.AGENT_STATUS_ONLINE)
    time.sleep(0.3)
    for c in cs: o('online', o.c(t.conv(c.name)))
    o('agent load', t.getagent('a1').load)
    # decline c0 -> back to place 1; next offer goes to? (a1 declined c0, so c1 probably)
    d = t.decline('a1', cs[0].name); o('decline reply', o.c(d))
    time.sleep(0.3)
    for c in cs: o('after decline', o.c(t.conv(c.name)))
    o('a1 status', AS[t.getagent('a1').status])
    # let offer time out
    wait_for(lambda: t.getagent('a1').status != S.AGENT_STATUS_ONLINE, timeout=8)
    time.sleep(0.3)
    for c in cs: o('after timeout', o.c(t.conv(c.name)))
    o('a1 status', AS[t.getagent('a1').status], 'load', t.getagent('a1').load)
    for c in cs: o('trans', o.lab(c.name), [(ST[x.to][19:], x.cause, x.agent.split('/')[-1]) for x in t.conv(c.name).transitions])
    # accept path: second agent
    t.agent('a2', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    time.sleep(0.3)
    for c in cs: o('a2 online', o.c(t.conv(c.name)))
    off = [c for c in cs if t.conv(c.name).agent == t.a('a2')]
    if off:
        o('accept', o.c(t.accept('a2', off[0].name)))
    # accept by wrong agent
    o('a1 accept not offered', err(lambda: t.accept('a1', cs[2].name)))
    o('a1 decline not offered', err(lambda: t.decline('a1', cs[2].name)))
compare(probe)
