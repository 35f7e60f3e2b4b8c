# Work conservation triggers: capacity raised, agent joins group, pull->auto, busy->online, conv ends, offer declined w/ 2nd agent, transfer frees slot.
from rt import *
def st(t, c): return o_.c(t.conv(c.name))
def probe(n, r, o):
    global o_; o_ = o
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    c1 = t.post('u1'); c2 = t.post('u2'); c3 = t.post('u3'); c4 = t.post('u4')
    for i, c in enumerate([c1, c2, c3, c4]): o.lab(c.name, f'c{i+1}')
    o('start', st(t, c2))
    # capacity raise
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a1'), capacity=2, request_id=rid()))
    time.sleep(0.3); o('cap raised', st(t, c2), 'load', t.getagent('a1').load)
    # capacity lowered below load: nothing revoked, no new work
    o('lower cap below load', (err(lambda: n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a1'), capacity=1, request_id=rid()))) or ('OK',))[0:1])
    time.sleep(0.3); o('cap lowered', st(t, c1), st(t, c2), 'load', t.getagent('a1').load, 'cap', t.getagent('a1').capacity)
    t.end('a1', c1.name); time.sleep(0.3)
    o('after one end: c3', st(t, c3))
    # agent joins group
    t.agent('a2', ['g2'], cap=1, status=S.AGENT_STATUS_ONLINE)
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a2'), groups=[t.g('g2'), t.g('g1')], request_id=rid()))
    time.sleep(0.3); o('a2 joined g1', st(t, c3))
    # busy -> online
    t.agent('a3', ['g1'], cap=1, status=S.AGENT_STATUS_BUSY)
    time.sleep(0.3); o('a3 busy', st(t, c4))
    t.status('a3', S.AGENT_STATUS_ONLINE)
    time.sleep(0.3); o('a3 online', st(t, c4))
    # pull -> auto
    p1 = t.post('p1', group='g2'); o.lab(p1.name, 'p1')
    t.agent('a4', ['g2'], cap=1, status=S.AGENT_STATUS_ONLINE)
    time.sleep(0.3); o('pull waiting', st(t, p1))
    n.admin.PutGroup(admin_pb2.PutGroupRequest(name=t.g('g2'), policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
    time.sleep(0.3); o('pull->auto', st(t, p1))
    # agent leaves group while holding conversation
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a3'), groups=[t.g('g2')], request_id=rid()))
    time.sleep(0.3); o('a3 left g1 holding c4', st(t, c4), 'a3 load', t.getagent('a3').load)
    # transfer frees slot: a3 transfers c4 to g1 -> a3 (now in g2, cap1) free; queued g2?
    for a in ['a1', 'a2', 'a3', 'a4']:
        ag = t.getagent(a); o(a, AS[ag.status], 'load', ag.load, 'cap', ag.capacity, sorted(o.lab(c.name) for c in t.assigned(a)))
compare(probe)
