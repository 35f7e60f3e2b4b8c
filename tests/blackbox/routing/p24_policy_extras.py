# Wrap-up slots, overflow max_waiting, priority aging ordering, steps: differential only.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('gw', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, wrap_up=dur(2), wrap_up_can_end_early=True)
    t.group('gx', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('go', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, overflow=admin_pb2.RoutingOverflow(max_waiting=2, group=t.g('gx')))
    t.group('ga', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, priority_aging=dur(1))
    t.agent('w', ['gw'], cap=1, status=S.AGENT_STATUS_ONLINE)
    c = t.post('w1', group='gw'); o.lab(c.name, 'w1'); t.end('w', c.name)
    c2 = t.post('w2', group='gw'); o.lab(c2.name, 'w2'); o('during wrap-up', o.c(c2), 'load', t.getagent('w').load, len(t.getagent('w').wrap_ups))
    wait_for(lambda: t.conv(c2.name).state == S.CONVERSATION_STATE_ASSIGNED, timeout=6)
    o('after wrap-up', o.c(t.conv(c2.name)))
    t.end('w', c2.name)
    o('end wrap-up early', AS[n.agent.EndWrapUp(agent_pb2.EndWrapUpRequest(agent=t.a('w'), request_id=rid())).status], t.getagent('w').load)
    o('end wrap-up none', err(lambda: n.agent.EndWrapUp(agent_pb2.EndWrapUpRequest(agent=t.a('w'), request_id=rid()))))
    os_ = []
    for i in range(4):
        x = t.post(f'o{i}', group='go'); o.lab(x.name, f'o{i}'); os_.append(x); o('overflow post', o.c(x))
    for x in os_: o('overflow now', o.c(t.conv(x.name)))
    lo = t.post('a0', group='ga'); o.lab(lo.name, 'aging-p0')
    time.sleep(2.5)
    hi = t.post('a1', group='ga', priority=2); o.lab(hi.name, 'aging-p2')
    hi2 = t.post('a2', group='ga', priority=3); o.lab(hi2.name, 'aging-p3')
    for x in [lo, hi, hi2]: o('aging', o.c(t.conv(x.name)))
compare(probe)
