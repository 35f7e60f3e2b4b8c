# SPEC §8 data scope: a member sees only its own conversations unless see-all; tenant isolation
from common import *
def probe(n, name, r):
    t = T(n, 'sc'+name.lower(), r)
    t2 = T(n, 'sx'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=1); t.agent('a2', cap=1); t.agent('a3', cap=1, status=S.AGENT_STATUS_BUSY)
    t2.agent('b1', cap=5); t2.agent('bsup', sup=True, status=0)
    c1 = t.post('u1').conversation.name; c2 = t.post('u2').conversation.name
    c3 = t.post('u3').conversation.name  # queued
    x1 = t2.post('v1').conversation.name
    o = {}
    who = {c: t.conv(c).agent.split('/')[-1] for c in (c1, c2)}
    SC = lambda a, f='': sorted(c.name for c in n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a(a), filter=f)).conversations)
    o['a1_sees'] = SC('a1'); o['a2_sees'] = SC('a2'); o['a3_sees'] = SC('a3'); o['sup_sees'] = SC('sup')
    o['a1_filter_other'] = code(lambda: SC('a1', f'name = "{c2 if who[c2]!="a1" else c1}"'))
    o['a1_filter_agent_other'] = code(lambda: SC('a1', f'agent = "{t.a("a2")}"'))
    # customer search scope
    SCu = lambda a: sorted(c.name for c in n.agent.SearchCustomers(agent_pb2.SearchCustomersRequest(agent=t.a(a))).customers)
    o['a3_customers'] = SCu('a3')
    # cross-tenant
    o['x_get_conv_hist'] = code(lambda: n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=t.a('sup'), conversation=x1)))[0]
    o['x_whisper'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=x1, text='x', request_id=rid())))[0]
    o['x_update'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('sup'), conversation=x1, note='x', request_id=rid())))[0]
    o['x_profile'] = code(lambda: n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('sup'), customer=t2.c('v1'))))[0]
    o['x_endbatch'] = code(lambda: [(r.ok, r.error) for r in n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[x1], request_id=rid())).results])
    o['x_reassign_to_agent'] = code(lambda: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c1], to_agent=t2.a('b1'), request_id=rid())))[0]
    o['x_bothost_agent'] = code(lambda: n.sup.SetBotHosting(supervisor_pb2.SetBotHostingRequest(supervisor=t.a('sup'), agent=t2.a('b1'), on=True, request_id=rid())))[0]
    o['x_sup_status'] = code(lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('sup'), agent=t2.a('b1'), status=S.AGENT_STATUS_BUSY, request_id=rid())))[0]
    o['x_transfer_to'] = code(lambda: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(who[c1]), conversation=c1, to_agent=t2.a('b1'), request_id=rid())))[0]
    o['x_transfer_group'] = code(lambda: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(who[c1]), conversation=c1, to_group=t2.g('g1'), request_id=rid())))[0]
    o['x_send'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=t.a('a1'), conversation=x1, text='x', request_id=rid())))[0]
    o['x_pick'] = code(lambda: n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=x1, request_id=rid())))[0]
    o['x_markread'] = code(lambda: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=x1, request_id=rid())))[0]
    o['x_invite'] = code(lambda: n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=x1, request_id=rid())))[0]
    o['x_search_filter'] = code(lambda: SC('sup', f'customer = "{t2.c("v1")}"'))[0]
    o['x_suplist_filter'] = code(lambda: [c.name for c in n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t, filter=f'name = "{x1}"')).conversations])[0]
    o['x_board'] = [c.conversation for c in n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t)).conversations if 'sx' in c.conversation]
    o['x_events'] = 'n/a'
    o['x1_after'] = (S.ConversationState.Name(t2.conv(x1).state), t2.conv(x1).note, t2.conv(x1).bot_hosting, t2.conv(x1).agent_messages)
    o['b1_status'] = S.AgentStatus.Name(n.admin.GetAgent(admin_pb2.GetAgentRequest(name=t2.a('b1'))).status)
    return o
def expect(o):
    f = []
    for k, v in o.items():
        if k.startswith('x_') and (v == 'OK' or (isinstance(v, list) and v and v[0] == 'OK' and v[1] and v[1] != [])):
            f.append(f'{k}: cross-tenant accepted {v}')
        if v in ('INTERNAL', 'UNKNOWN') or (isinstance(v, list) and v and v[0] in ('INTERNAL','UNKNOWN')): f.append(f'{k}: {v}')
    if len(o.get('a1_sees', [])) != 1: f.append(f"a1 sees {o.get('a1_sees')}")
    if o.get('a3_sees'): f.append(f"a3 (never served) sees {o.get('a3_sees')}")
    if len(o.get('sup_sees', [])) != 3: f.append(f"sup sees {o.get('sup_sees')}")
    return f
report(run_both(probe), expect)
