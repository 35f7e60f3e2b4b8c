# invisible/away agents: no pushed work, but unaccepted list events (proto: every member not offline) and Pick allowed for invisible
from common import *
def probe(n, name, r):
    t = T(n, 'iv'+name.lower(), r)
    t.agent('inv', status=S.AGENT_STATUS_INVISIBLE); t.agent('away', status=S.AGENT_STATUS_AWAY)
    si, sa = agent_stream(n, t.a('inv')), agent_stream(n, t.a('away'))
    c = t.post('u1').conversation.name
    o = {'state': S.ConversationState.Name(t.conv(c).state)}
    o['inv_added'] = bool(si.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 3))
    o['away_added'] = bool(sa.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 3))
    o['inv_list'] = t.unacc('inv'); o['away_list'] = t.unacc('away')
    o['away_pick'] = code(lambda: n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('away'), conversation=c, request_id=rid())))[0]
    o['inv_pick'] = code(lambda: n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('inv'), conversation=c, request_id=rid())))[0]
    o['state_after'] = (S.ConversationState.Name(t.conv(c).state), t.conv(c).agent)
    o['away_removed'] = [e.unaccepted_removed.reason for e in sa.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c, 3)]
    si.cancel(); sa.cancel()
    return o
report(run_both(probe))
