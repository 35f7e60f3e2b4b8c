# SPEC §6: conversation tags, customer tags, notes, remark name, phone, e-mail; editing updates every view
from common import *
FM = field_mask_pb2.FieldMask
def probe(n, name, r):
    t = T(n, 'pf'+name.lower(), r)
    t.agent('a1'); t.agent('a2'); t.agent('sup', sup=True); t.agent('x', groups=('g2',)) if False else None
    t.group('g2'); t.agent('x', groups=('g2',))
    s2 = agent_stream(n, t.a('a2'))
    c = t.post('u1').conversation.name
    o = {}
    cv = n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, tags=['vip','refund'], note='n1', request_id=rid()))
    o['upd_resp'] = (list(cv.tags), cv.note)
    o['get'] = (list(t.conv(c).tags), t.conv(c).note)
    la = n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=t.a('a1'))).conversations
    o['list'] = [(list(x.tags), x.note) for x in la]
    sc = n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('a1'))).conversations
    o['search'] = [(list(x.tags), x.note) for x in sc]
    lc = n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t)).conversations
    o['suplist'] = [(list(x.tags), x.note) for x in lc]
    # no mask, only note: tags kept
    cv = n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, note='n2', request_id=rid()))
    o['nomask_note'] = (list(cv.tags), cv.note)
    # mask tags, empty -> clear tags only
    cv = n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, update_mask=FM(paths=['tags']), request_id=rid()))
    o['mask_clear_tags'] = (list(cv.tags), cv.note)
    o['bad_path'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, update_mask=FM(paths=['bogus']), request_id=rid())))[0]
    o['other_agent'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a2'), conversation=c, note='z', request_id=rid())))[0]
    o['sup_edit'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('sup'), conversation=c, note='bysup', request_id=rid())))[0]
    # customer profile
    cu = t.c('u1')
    p = n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=cu, remark_name='Zhang', phone='13800138000', email='z@example.com', tags=['t1'], request_id=rid()))
    o['prof_resp'] = (p.remark_name, p.phone, p.email, list(p.tags))
    g = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=cu))
    o['admin_get'] = (g.remark_name, g.phone, g.email, list(g.tags))
    g = n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('a2'), customer=cu))
    o['a2_get'] = (g.remark_name, g.phone, g.email, list(g.tags))
    o['x_get'] = code(lambda: n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('x'), customer=cu)))[0]
    for f, v in (('remark_name','Zhang'),('phone','13800138000'),('email','z@example.com')):
        lc = n.admin.ListCustomers(admin_pb2.ListCustomersRequest(parent=t.t, filter=f'{f} = "{v}"')).customers
        o['find_'+f] = [x.name for x in lc]
        sc = n.agent.SearchCustomers(agent_pb2.SearchCustomersRequest(agent=t.a('a1'), filter=f'{f} = "{v}"')).customers
        o['asearch_'+f] = [x.name for x in sc]
    lc = n.admin.ListCustomers(admin_pb2.ListCustomersRequest(parent=t.t, filter='phone = "138*"')).customers
    o['find_prefix'] = [x.name for x in lc]
    # change phone only (no mask)
    p = n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=cu, phone='139', request_id=rid()))
    o['phone_only'] = (p.remark_name, p.phone, p.email, list(p.tags))
    lc = n.admin.ListCustomers(admin_pb2.ListCustomersRequest(parent=t.t, filter='phone = "13800138000"')).customers
    o['old_phone_found'] = [x.name for x in lc]
    lc = n.admin.ListCustomers(admin_pb2.ListCustomersRequest(parent=t.t, filter='phone = "139"')).customers
    o['new_phone_found'] = [x.name for x in lc]
    p = n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=cu, update_mask=FM(paths=['email','tags']), request_id=rid()))
    o['clear_email_tags'] = (p.remark_name, p.phone, p.email, list(p.tags))
    o['bad_email'] = code(lambda: n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=cu, email='x'*5000, request_id=rid())))
    o['x_update'] = code(lambda: n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('x'), customer=cu, phone='1', request_id=rid())))[0]
    o['unknown_cust'] = code(lambda: n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('sup'), customer=t.c('nobody'))))[0]
    # after end: still visible in archived views
    n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, tags=['x1'], note='final', request_id=rid()))
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o['ended_get'] = (list(t.conv(c).tags), t.conv(c).note)
    o['edit_after_end'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, note='post', request_id=rid())))
    o['ended_get2'] = (list(t.conv(c).tags), t.conv(c).note)
    lc = n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t, filter='state = ENDED')).conversations
    o['ended_list'] = [(list(x.tags), x.note) for x in lc]
    n.restart(kill=True)
    o['restart_get'] = (list(t.conv(c).tags), t.conv(c).note)
    g = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=cu))
    o['restart_cust'] = (g.remark_name, g.phone, g.email, list(g.tags))
    lc = n.admin.ListCustomers(admin_pb2.ListCustomersRequest(parent=t.t, filter='remark_name = "Zhang"')).customers
    o['restart_find'] = [x.name for x in lc]
    s2.cancel()
    return o
report(run_both(probe))
