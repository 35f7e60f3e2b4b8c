# History visible to an agent holding an offer (before accept); whisper on offered conversation
from common import *
def probe(n, name, r):
    pol = admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(60))
    t = T(n, 'oh'+name.lower(), r, policy=pol)
    t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('sup', sup=True, status=0)
    c = t.post('u1', 'c1').conversation.name
    poll(lambda: t.conv(c).state == S.CONVERSATION_STATE_OFFERED)
    n.agent.Accept(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    t.send('a1', c, 'r1')
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_BUSY, request_id=rid()))
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_group=t.g('g1'), request_id=rid()))
    o = {}
    o['state'] = poll(lambda: S.ConversationState.Name(t.conv(c).state) if t.conv(c).state == S.CONVERSATION_STATE_OFFERED else None, 5)
    o['offered_agent'] = t.conv(c).agent
    o['hist_offered'] = code(lambda: [m.text for m in t.hist('a2', c)])
    o['whisper_offered'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='w', request_id=rid())))[0]
    o['update_offered'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a2'), conversation=c, note='n', request_id=rid())))[0]
    o['markread_offered'] = code(lambda: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid())))[0]
    o['send_offered'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=t.a('a2'), conversation=c, text='x', request_id=rid())))[0]
    o['profile_offered'] = code(lambda: n.agent.GetCustomerProfile(agent_pb2.GetCustomerProfileRequest(agent=t.a('a2'), customer=t.c('u1'))))[0]
    n.agent.Accept(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid()))
    o['hist_after_accept'] = [m.text for m in t.hist('a2', c)]
    return o
report(run_both(probe))
