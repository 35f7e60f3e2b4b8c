# Priority sources (customer groups, customer priority, message) and pinned vs group order, last_agent validation.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r, customer_group_priorities={'vip': 7, 'gold': 4})
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, dedicated_timeout=dur(60))
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('v1'), customer_groups=['vip', 'gold'], request_id=rid()))
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('p1'), priority=5, request_id=rid()))
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d1'), dedicated_agent=t.a('a1'), request_id=rid()))
    c0 = t.post('x0'); o.lab(c0.name, 'c0busy')
    cA = t.post('plain'); o.lab(cA.name, 'plain')
    cD = t.post('d1'); o.lab(cD.name, 'ded')
    cV = t.post('v1'); o.lab(cV.name, 'vip')
    cP = t.post('p1', priority=2); o.lab(cP.name, 'cust5msg2')
    cM = t.post('m1', priority=6); o.lab(cM.name, 'msg6')
    for c in [cA, cD, cV, cP, cM]: o('queued', o.c(t.conv(c.name)))
    o('a1 unaccepted', [o.lab(c.name) for c in t.unaccepted('a1')])
    order = []
    cur = c0
    for i in range(5):
        t.end('a1', cur.name); time.sleep(0.2)
        a = t.assigned('a1'); order.append([o.lab(x.name) for x in a]); cur = a[0] if a else None
        if not cur: break
    o('a1 takes in order', order)
    o('last_agent_timeout w/o pref', err(lambda: t.group('g2', last_agent_timeout=dur(5))))
    o('priority >255 msg', err(lambda: t.post('big', priority=300)))
    o('priority >255 customer', err(lambda: n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('big2'), priority=300, request_id=rid()))))
    o('cg prio >255', err(lambda: n.admin.UpdateTenant(admin_pb2.UpdateTenantRequest(name='tenants/t1', settings=admin_pb2.TenantSettings(customer_group_priorities={'x': 1000}), update_mask=field_mask_pb2.FieldMask(paths=['settings.customer_group_priorities']), request_id=rid()))))
compare(probe)
