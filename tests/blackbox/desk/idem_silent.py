# A request_id reused by a DIFFERENT call whose answer has the same type (Conversation) is
# answered with the first call's stale answer and the new call is silently NOT applied.
# common.proto: "a retry with the same id returns the first answer"; README: "a reused id, which is refused".
from common import *
def probe(n, name, r):
    t = T(n, 'is'+name.lower(), r)
    t.agent('a1', cap=10)
    c1 = t.post('u1').conversation.name
    a1 = t.a('a1')
    o = {}
    rq = rid()
    n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq))
    # same id, EndConversation
    o['end_code'] = code(lambda: n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)))[0]
    o['state_after_end'] = S.ConversationState.Name(t.conv(c1).state)
    rq2 = rid()
    n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=a1, conversation=c1, note='first', request_id=rq2))
    o['update2_code'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=a1, conversation=c1, note='second', request_id=rq2)))[0]
    o['note'] = t.conv(c1).note
    rq3 = rid()
    n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='first', request_id=rq3))
    o['send2_code'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='second', request_id=rq3)))[0]
    o['texts'] = [m.text for m in t.hist('a1', c1) if m.sender == 'agent']
    o['long_request_id_send'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='x', request_id='r'*200)))
    o['long_request_id_post'] = code(lambda: n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='x', request_id='p'*200)))
    o['long_request_id_update'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=a1, conversation=c1, note='z', request_id='u'*200)))
    o['long_request_id_markread'] = code(lambda: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id='m'*200)))
    return o
def expect(o):
    f = []
    if o.get('end_code') == 'OK' and o.get('state_after_end') != 'CONVERSATION_STATE_ENDED': f.append('EndConversation with reused id answered OK but conversation not ended')
    if o.get('update2_code') == 'OK' and o.get('note') != 'second': f.append('UpdateConversation with reused id (different note) answered OK but not applied')
    if o.get('send2_code') == 'OK' and 'second' not in o.get('texts', []): f.append('SendMessage with reused id (different text) answered OK but not sent')
    if o.get('long_request_id_send', ['OK'])[0] == 'OK': f.append('request_id > 128 bytes accepted by SendMessage')
    if o.get('long_request_id_post', ['OK'])[0] == 'OK': f.append('request_id > 128 bytes accepted by PostMessage')
    return f
report(run_both(probe), expect)
