# SPEC §6 editing profile updates every view: idle (stored) customer edited by its last agent; search indexes; restart
from common import *
FM = field_mask_pb2.FieldMask
def probe(n, name, r):
    t = T(n, 'pi'+name.lower(), r, groups=('g1','g2'))
    t.agent('a1'); t.agent('other', groups=('g2',))
    c = t.post('u1').conversation.name
    n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=t.c('u1'), email='old@x.com', remark_name='Old', request_id=rid()))
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    n.restart(kill=True)   # customer now idle / loaded from store
    o = {}
    F = lambda f: [x.name for x in n.admin.ListCustomers(admin_pb2.ListCustomersRequest(parent=t.t, filter=f)).customers]
    o['find_old_before'] = F('email = "old@x.com"')
    o['scope_last_agent'] = code(lambda: n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('a1'), customer=t.c('u1'))).email)
    o['scope_other'] = code(lambda: n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('other'), customer=t.c('u1'))))[0]
    p = n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=t.c('u1'), email='new@x.com', remark_name='New', request_id=rid()))
    o['resp'] = (p.email, p.remark_name, p.last_agent)
    o['get'] = (lambda g: (g.email, g.remark_name))(n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))))
    o['find_new'] = F('email = "new@x.com"'); o['find_old'] = F('email = "old@x.com"')
    o['find_new_remark'] = F('remark_name = "New"'); o['find_old_remark'] = F('remark_name = "Old"')
    o['agent_search_new'] = [x.name for x in n.agent.SearchCustomers(agent_pb2.SearchCustomersRequest(agent=t.a('a1'), filter='email = "new@x.com"')).customers]
    n.restart(kill=True)
    o['r_get'] = (lambda g: (g.email, g.remark_name))(n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))))
    o['r_find_new'] = F('email = "new@x.com"'); o['r_find_old'] = F('email = "old@x.com"')
    # next conversation shows profile edits
    c2 = t.post('u1', 'back').conversation.name
    o['open_conv'] = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))).open_conversation == c2
    o['open_profile'] = (lambda g: (g.email, g.remark_name))(n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))))
    return o
def expect(o):
    f = []
    if o.get('find_old'): f.append('old e-mail still finds the customer after edit')
    if not o.get('find_new'): f.append('new e-mail does not find the customer')
    if o.get('find_old_remark'): f.append('old remark still finds')
    if o.get('r_find_old'): f.append('old e-mail finds after restart')
    if o.get('open_profile') != ['new@x.com', 'New']: f.append(f"profile on next conversation {o.get('open_profile')}")
    return f
report(run_both(probe), expect)
