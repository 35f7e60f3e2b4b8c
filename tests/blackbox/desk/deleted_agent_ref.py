# common.proto: "A reference to a resource deleted since reads as empty, never as a dangling name".
# ACTORS routing: served_by / rating.credited_agents / transitions[].agent of a deleted agent read
# "tenants/{t}/agents/<internal number>" (a name that never existed). Tenant-actor reads "".
# Both: GetHistory Message.agent keeps the deleted agent's name.
from common import *
def probe(n, name, r):
    t = T(n, 'da'+name.lower(), r)
    t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('sup', sup=True, status=0)
    c = t.post('u1').conversation.name
    t.send('a1', c, 'r1')
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_agent=t.a('a2'), request_id=rid()))
    n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=5, request_id=rid()))
    n.admin.DeleteAgent(admin_pb2.DeleteAgentRequest(name=t.a('a1'), request_id=rid()))
    cv = t.conv(c)
    return {'served_by': list(cv.served_by), 'credited': list(cv.rating.credited_agents),
            'transition_agents': [x.agent for x in cv.transitions], 'history_agents': [m.agent for m in t.hist('sup', c) if m.sender == 'agent']}
def expect(o):
    f = []
    known = {'', 'tenants/T/agents/a2'}
    for k in ('served_by', 'credited', 'transition_agents'):
        bad = [x for x in o.get(k, []) if x not in known]
        if bad: f.append(f'{k} has dangling/invented name {bad}')
    if 'tenants/T/agents/a1' in o.get('history_agents', []): f.append('history Message.agent still names deleted agent a1')
    return f
report(run_both(probe), expect)
