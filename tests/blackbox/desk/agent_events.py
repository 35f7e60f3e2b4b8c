# AgentEvent Assigned.via / Released.reason / UnacceptedRemoved.reason across supervisor actions
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(offline_grace=dur(1))
    t = T(n, 'ae'+name.lower(), r, settings=st, groups=('g1','g2'))
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=5); t.agent('a2', cap=5, status=S.AGENT_STATUS_BUSY); t.agent('b', groups=('g2',), status=S.AGENT_STATUS_BUSY)
    s1, s2, sb = agent_stream(n, t.a('a1')), agent_stream(n, t.a('a2')), agent_stream(n, t.a('b'))
    cs = [t.post(f'u{i}').conversation.name for i in range(4)]
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[0]], to_agent=t.a('a2'), request_id=rid()))
    n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[1]], to_group=t.g('g2'), request_id=rid()))
    n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=cs[2], request_id=rid()))
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_OFFLINE, request_id=rid()))
    time.sleep(3)
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('b'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    time.sleep(1)
    def summ(s):
        out = []
        for e in s.items:
            k = kind(e)
            if k == 'assigned': out.append((k, e.conversation, e.assigned.via))
            elif k == 'released': out.append((k, e.conversation, e.released.reason))
            elif k == 'unaccepted_added': out.append((k, e.conversation, e.unaccepted_added.group))
            elif k == 'unaccepted_removed': out.append((k, e.conversation, e.unaccepted_removed.reason))
            elif k == 'status_changed': out.append((k, S.AgentStatus.Name(e.status_changed.status), e.status_changed.cause))
        return out
    o = {'a1': summ(s1), 'a2': summ(s2), 'b': summ(sb)}
    o['states'] = [(S.ConversationState.Name(t.conv(c).state), t.conv(c).agent) for c in cs]
    for s in (s1, s2, sb): s.cancel()
    return o
report(run_both(probe))
