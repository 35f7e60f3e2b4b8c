# request_id over 128 bytes: tenant-actor refuses INVALID_ARGUMENT "request_id: longer than 128 bytes";
# ACTORS routing accepts it on calls served by conversation actors.
from common import *
def probe(n, name, r):
    t = T(n, 'lr'+name.lower(), r)
    t.agent('a1')
    c = t.post('u1').conversation.name
    return {
      'SendMessage': code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=t.a('a1'), conversation=c, text='x', request_id='s'*200)))[0],
      'PostMessage': code(lambda: n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='x', request_id='p'*200)))[0],
      'UpdateConversation': code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, note='z', request_id='u'*200)))[0],
      'SetStatus': code(lambda: n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_BUSY, request_id='t'*200)))[0],
    }
report(run_both(probe), lambda o: [f'{k}: {v} for a 200-byte request_id' for k, v in o.items() if v == 'OK'])
