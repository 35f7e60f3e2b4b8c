# kill -9 restart: queue order/positions, assignments, offers + offer timeout, agent status/load, grace timer, pins.
from rt import *
def snap(t, o, cs, tag):
    for c in cs: o(tag, o.c(t.conv(c.name)))
    for a in ['a1', 'a2', 'a3']:
        ag = t.getagent(a); o(tag, a, AS[ag.status], 'load', ag.load, sorted(o.lab(x.name) for x in t.assigned(a)))
def probe(n, r, o):
    t = T(n, 't1', r, offline_grace=dur(4))
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(4), dedicated_timeout=dur(5))
    t.agent('a1', ['g1'], cap=2, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g2'], cap=1, status=S.AGENT_STATUS_ONLINE)
    t.agent('a3', ['g2'], cap=1)
    cs = []
    for i, (g, p) in enumerate([('g1', 0), ('g1', 0), ('g1', 0), ('g1', 3), ('g1', 0), ('g2', 0), ('g2', 0)]):
        c = t.post(f'u{i}', group=g, priority=p); o.lab(c.name, f'c{i}'); cs.append(c)
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d1'), dedicated_agent=t.a('a2'), request_id=rid()))
    d = t.post('d1', group='g2'); o.lab(d.name, 'd1'); cs.append(d)
    snap(t, o, cs, 'before')
    t.status('a1', S.AGENT_STATUS_OFFLINE)  # grace timer 4s running
    n.restart(kill=True)
    time.sleep(0.5)
    snap(t, o, cs, 'after restart')
    # timers: offer timeout (4s) -> c5 back to queue; grace (4s) -> a1's requeued at front; dedicated (5s) fallback
    time.sleep(6)
    snap(t, o, cs, 'after timers')
    n.restart(kill=True); time.sleep(0.5)
    snap(t, o, cs, 'after 2nd restart')
compare(probe)
