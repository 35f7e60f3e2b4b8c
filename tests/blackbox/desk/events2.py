# §9 per-conversation event order; transferred details for waiting conversations; tenant isolation of streams
from common import *
def probe(n, name, r):
    t = T(n, 'e2'+name.lower(), r, groups=('g1','g2'), mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t2 = T(n, 'e3'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=3); t.agent('b1', groups=('g2',), status=S.AGENT_STATUS_BUSY)
    t2.agent('z1')
    ev = tenant_stream(n, t.t)
    ev2 = tenant_stream(n, t2.t)
    cs = [t.post(f'u{i}').conversation.name for i in range(8)]
    t2.post('x1')
    time.sleep(1.2)
    # queued ones: reassign 2 to group g2
    queued = [c for c in cs if t.conv(c).state == S.CONVERSATION_STATE_QUEUED]
    n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=queued[:2], to_group=t.g('g2'), request_id=rid()))
    assigned = [c for c in cs if t.conv(c).state == S.CONVERSATION_STATE_ASSIGNED]
    for c in assigned: n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('b1'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=cs, request_id=rid()))
    ev.wait(lambda e: e.type=='ended', 10, 8)
    time.sleep(0.5)
    o = {}
    order = {}
    for e in ev.items:
        if e.conversation: order.setdefault(e.conversation, []).append(e.type)
    o['orders'] = sorted(tuple(v) for v in order.values())
    bad = []
    for c, v in order.items():
        if v[0] != 'opened' or v[-1] != 'ended': bad.append((c, v))
    o['bad_order'] = bad
    tr = [e for e in ev.items if e.type == 'transferred']
    o['transferred'] = sorted((e.agent, e.transferred.from_agent, e.transferred.to_group, e.transferred.left_group, e.transferred.left_waited_ms >= 1000) for e in tr)
    o['foreign_in_t'] = [e.conversation for e in ev.items if 'e3' in e.conversation or 'e3' in e.agent]
    o['t2_types'] = sorted(set(e.type for e in ev2.items))
    o['t2_foreign'] = [e.conversation for e in ev2.items if '/e2' in e.conversation]
    ev.cancel(); ev2.cancel()
    return o
report(run_both(probe))
