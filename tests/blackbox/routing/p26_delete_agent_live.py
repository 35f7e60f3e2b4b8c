# DeleteAgent while offered / pinned (dedicated) / in grace; re-create same agent id.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r, offline_grace=dur(30))
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(60), dedicated_timeout=dur(60))
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g1'], cap=2)
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d1'), dedicated_agent=t.a('a1'), request_id=rid()))
    c0 = t.post('u0'); o.lab(c0.name, 'c0')  # offered to a1
    d = t.post('d1'); o.lab(d.name, 'd1')  # pinned to a1 (full)
    o('before', o.c(t.conv(c0.name)), o.c(t.conv(d.name)))
    o('delete a1', err(lambda: n.admin.DeleteAgent(admin_pb2.DeleteAgentRequest(name=t.a('a1'), request_id=rid()))))
    time.sleep(0.3)
    o('after', o.c(t.conv(c0.name)), o.c(t.conv(d.name)))
    o('d1 customer dedicated', repr(n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('d1'))).dedicated_agent))
    t.status('a2', S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    o('a2 online', o.c(t.conv(c0.name)), o.c(t.conv(d.name)))
    o('accept deleted agent', err(lambda: t.accept('a1', c0.name)))
    # recreate a1
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    time.sleep(0.3)
    o('a1 recreated', o.c(t.conv(c0.name)), o.c(t.conv(d.name)), 'a1 load', t.getagent('a1').load, [o.lab(x.name) for x in t.assigned('a1')])
    # events for c0
compare(probe)
