# A request_id reused by a different kind of call -> INTERNAL (should be FAILED_PRECONDITION/INVALID_ARGUMENT
# "request_id was used by another call"), both routings. Also AC applies some reused ids again.
from common import *
def probe(n, name, r):
    t = T(n, 'ii'+name.lower(), r)
    t.agent('a1', cap=10); t.agent('sup', sup=True, status=0)
    c1 = t.post('u1').conversation.name
    a1 = t.a('a1')
    rq = rid()
    n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='hello', request_id=rq))
    o = {}
    o['UpdateConversation'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=a1, conversation=c1, note='n', request_id=rq)))
    o['PostMessage'] = code(lambda: n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='zz', request_id=rq)))
    o['SupSetStatus'] = code(lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('sup'), agent=a1, status=S.AGENT_STATUS_AWAY, request_id=rq)))
    o['Whisper'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c1, text='w', request_id=rq)))
    o['whisper_applied'] = any(m.sender == 'whisper' for m in t.hist('sup', c1))
    return o
def expect(o):
    f = []
    for k in ('UpdateConversation','PostMessage','SupSetStatus','Whisper'):
        if o[k][0] in ('INTERNAL','UNKNOWN'): f.append(f'{k} with reused request_id -> {o[k][0]}: {o[k][1][:120]}')
    if o['Whisper'][0] == 'OK' and not o.get('whisper_applied'): f.append('Whisper with a request_id already used by SendMessage answered OK (with the SendMessage answer) but nothing whispered')
    return f
report(run_both(probe), expect)
