# Actions on an ENDED (existing, readable) conversation: tenant-actor answers FAILED_PRECONDITION,
# actors routing answers NOT_FOUND although GetConversation returns it (state ENDED).
from common import *
A = agent_pb2; SP = supervisor_pb2
def probe(n, name, r):
    t = T(n, 'en'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1')
    c = t.post('u1').conversation.name
    n.agent.EndConversation(A.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o = {'get_state': S.ConversationState.Name(t.conv(c).state)}
    o['SendMessage'] = code(lambda: n.agent.SendMessage(A.SendMessageRequest(agent=t.a('a1'), conversation=c, text='x', request_id=rid())))
    o['MarkRead'] = code(lambda: n.agent.MarkRead(A.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid())))
    o['AgentEnd'] = code(lambda: n.agent.EndConversation(A.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid())))
    o['SupEnd'] = code(lambda: n.sup.EndConversation(SP.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=c, request_id=rid())))
    o['Whisper'] = code(lambda: n.sup.Whisper(SP.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='w', request_id=rid())))
    o['Transfer'] = code(lambda: n.agent.Transfer(A.TransferRequest(agent=t.a('a1'), conversation=c, to_group=t.g('g1'), request_id=rid())))
    o['BotHosting'] = code(lambda: n.agent.SetBotHosting(A.AgentBotHostingRequest(agent=t.a('a1'), conversation=c, on=True, request_id=rid())))
    o['InviteRating'] = code(lambda: n.agent.InviteRating(A.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid())))
    o['CloseConversation'] = code(lambda: n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=c, request_id=rid())))
    o['RequestHuman'] = code(lambda: n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c, request_id=rid())))
    return o
def expect(o):
    return [f'{k}: {v[0]} on an ended conversation ({v[1][:100]})' for k, v in o.items() if isinstance(v, list) and v[0] == 'NOT_FOUND']
report(run_both(probe), expect)
