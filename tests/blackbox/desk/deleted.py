# common.proto: "A reference to a resource deleted since reads as empty, never as a dangling name";
# group membership change updates unaccepted lists live (AgentEvent.UnacceptedRemoved reason moved)
from common import *
FM = field_mask_pb2.FieldMask
def probe(n, name, r):
    t = T(n, 'dl'+name.lower(), r, groups=('g1','g2'), mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a1'); t.agent('a2'); t.agent('sup', sup=True, status=0)
    o = {}
    c = t.post('u1').conversation.name
    n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    t.send('a1', c, 'r1')
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_agent=t.a('a2'), request_id=rid()))
    n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=5, request_id=rid()))
    # delete a1 (served earlier, now idle)
    o['delete_a1'] = code(lambda: n.admin.DeleteAgent(admin_pb2.DeleteAgentRequest(name=t.a('a1'), request_id=rid())))[0]
    cv = t.conv(c)
    o['served_by'] = sorted(cv.served_by)
    o['credited'] = sorted(cv.rating.credited_agents)
    o['transitions_agents'] = [x.agent for x in cv.transitions]
    o['hist_agents'] = [m.agent for m in t.hist('sup', c)]
    o['board_agents'] = sorted(a.name for a in n.sup.GetAgentBoard(supervisor_pb2.GetAgentBoardRequest(tenant=t.t)).agents)
    o['search_a1_filter'] = code(lambda: len(n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t, filter=f'agent = "{t.a("a1")}"')).conversations))
    o['cust_last_agent'] = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))).last_agent
    # move a2's group membership: unaccepted list updates
    s2 = agent_stream(n, t.a('a2'))
    c2 = t.post('u2').conversation.name
    s2.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c2)
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a2'), groups=[t.g('g2')], update_mask=FM(paths=['groups']), request_id=rid()))
    rm = s2.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c2, 5)
    o['moved_event'] = rm[0].unaccepted_removed.reason if rm else None
    o['a2_unacc_after_move'] = t.unacc('a2')
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a2'), groups=[t.g('g1'), t.g('g2')], update_mask=FM(paths=['groups']), request_id=rid()))
    ad = s2.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c2, 5, 2)
    o['readded_on_join'] = len(ad)
    o['a2_unacc_after_join'] = t.unacc('a2')
    # delete group g1 while c2 waits in it
    o['delete_group'] = code(lambda: n.admin.DeleteGroup(admin_pb2.DeleteGroupRequest(name=t.g('g2'), request_id=rid())))
    o['a2_groups'] = list(n.admin.GetAgent(admin_pb2.GetAgentRequest(name=t.a('a2'))).groups)
    s2.cancel()
    n.restart(kill=True)
    cv = t.conv(c)
    o['restart_served_by'] = sorted(cv.served_by)
    o['restart_credited'] = sorted(cv.rating.credited_agents)
    return o
def expect(o):
    f = []
    for k in ('served_by','credited','transitions_agents','hist_agents','cust_last_agent','restart_served_by','restart_credited'):
        v = o.get(k)
        if v and 'tenants/T/agents/a1' in (v if isinstance(v, list) else [v]): f.append(f'{k} still names deleted agent a1: {v}')
    return f
report(run_both(probe), expect)
