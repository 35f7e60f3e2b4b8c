# SPEC §6 lists live: an agent whose stream stays connected while it is offline (no unaccepted events while offline,
# per proto) comes back online: does its stream get the conversations that entered meanwhile?
# Also: agent stream resume across kill -9.
from common import *
def probe(n, name, r):
    t = T(n, 'sg'+name.lower(), r, mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a1')
    s1 = agent_stream(n, t.a('a1'))
    time.sleep(0.2)
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_OFFLINE, request_id=rid()))
    c = t.post('u1').conversation.name
    time.sleep(0.3)
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    o = {'list': t.unacc('a1'), 'added_after_online': bool(s1.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 4))}
    # now the reverse: while offline, a listed conversation is picked by another
    t.agent('a2')
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_OFFLINE, request_id=rid()))
    n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid()))
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    o['list2'] = t.unacc('a1')
    o['removed_seen'] = bool(s1.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c, 4))
    cur = [e.cursor for e in s1.items]
    s1.cancel()
    n.restart(kill=True)
    s1b = agent_stream(n, t.a('a1'))
    s1b.wait(lambda e: e.cursor >= cur[-1], 5)
    o['replay_after_restart'] = [e.cursor for e in s1b.items if e.cursor <= cur[-1]] == cur
    s1b.cancel()
    return o
report(run_both(probe))
