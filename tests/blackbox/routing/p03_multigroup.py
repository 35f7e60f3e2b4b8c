# Agent in several groups takes best waiting across its groups (priority, then longest wait).
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    for g in ['g1', 'g2', 'g3']: t.group(g, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1', 'g2'], cap=1)
    seq = [('g1', 0), ('g2', 0), ('g2', 3), ('g1', 3), ('g3', 9), ('g1', 0)]
    cs = []
    for i, (g, p) in enumerate(seq):
        c = t.post(f'u{i}', group=g, priority=p); o.lab(c.name, f'c{i}{g}p{p}'); cs.append(c); time.sleep(0.01)
    t.status('a1', S.AGENT_STATUS_ONLINE)
    for step in range(5):
        time.sleep(0.3)
        asg = t.assigned('a1')
        o('step', step, 'assigned', [o.lab(c.name) for c in asg])
        for c in asg: t.end('a1', c.name)
    for c in cs: o('final', o.c(t.conv(c.name)))
compare(probe)
