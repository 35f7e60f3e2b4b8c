# SPEC §8 reassign/end in batch; §4 batch-end reply (not manual-end); events transferred/ended
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(replies=admin_pb2.ReplySettings(manual_end=admin_pb2.Texts(texts=['MANUAL']), batch_end=admin_pb2.Texts(texts=['BATCH'])))
    t = T(n, 'bt'+name.lower(), r, settings=st, groups=('g1','g2'))
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10); t.agent('b1', groups=('g2',), status=S.AGENT_STATUS_BUSY); t.agent('a2', status=S.AGENT_STATUS_BUSY)
    ev = tenant_stream(n, t.t)
    out = Stream(n.chan.StreamOutbound(channel_pb2.StreamOutboundRequest(tenant=t.t)))
    cs = [t.post(f'u{i}').conversation.name for i in range(4)]
    o = {}
    o['agents'] = [t.conv(c).agent for c in cs]
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    bogus = t.t + '/conversations/999999'
    rq = rid()
    R = lambda: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[0], cs[1], bogus], to_agent=t.a('a2'), request_id=rq))
    res = R()
    o['reassign'] = [(x.conversation, x.ok, bool(x.error)) for x in res.results]
    o['reassign_err'] = [x.error for x in res.results if not x.ok]
    o['reassign_retry_same'] = [(x.conversation, x.ok) for x in R().results] == [(x.conversation, x.ok) for x in res.results]
    o['reassign_reuse_diff'] = code(lambda: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[2]], to_agent=t.a('a2'), request_id=rq)))[0]
    o['c2_agent_after_reuse'] = t.conv(cs[2]).agent
    o['after_reassign'] = [t.conv(c).agent for c in cs[:2]]
    tr = ev.wait(lambda e: e.type == 'transferred', 5, 2)
    o['transferred_events'] = sorted((e.conversation, e.transferred.from_agent, e.transferred.to_agent) for e in tr)
    res = n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[2]], to_group=t.g('g2'), request_id=rid()))
    o['to_group'] = [(x.ok, x.error) for x in res.results]
    o['c2_state'] = (S.ConversationState.Name(t.conv(cs[2]).state), t.conv(cs[2]).group)
    o['empty_batch'] = code(lambda: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[], to_agent=t.a('a2'), request_id=rid())))[0]
    o['no_target'] = code(lambda: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[3]], request_id=rid())))[0]
    o['to_offline_agent'] = [(x.ok, x.error) for x in n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[3]], to_agent=t.a('sup'), request_id=rid())).results]
    o['dup_in_batch'] = code(lambda: [(x.ok, x.error) for x in n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cs[3], cs[3]], to_agent=t.a('a2'), request_id=rid())).results])
    # end batch
    res = n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[cs[0], cs[2], bogus], request_id=rid()))
    o['endbatch'] = [(x.conversation, x.ok) for x in res.results]
    o['endbatch_states'] = [S.ConversationState.Name(t.conv(c).state) for c in (cs[0], cs[2])]
    o['end_causes'] = [t.conv(c).transitions[-1].cause for c in (cs[0], cs[2])]
    en = ev.wait(lambda e: e.type == 'ended', 5, 2)
    o['ended_events'] = sorted((e.conversation, e.ended.cause, e.ended.from_state) for e in en)
    res = n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=cs[1], request_id=rid()))
    o['sup_end_cause'] = res.transitions[-1].cause
    o['end_again'] = [(x.ok) for x in n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[cs[0]], request_id=rid())).results]
    time.sleep(0.7)
    o['end_replies'] = sorted((m.conversation, m.text) for m in out.items if m.text in ('MANUAL','BATCH'))
    o['nonsup_batch'] = code(lambda: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('a1'), conversations=[cs[3]], request_id=rid())))[0]
    o['too_many'] = code(lambda: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[cs[3]]*5000, request_id=rid())))[0]
    ev.cancel(); out.cancel()
    return o
def expect(o):
    f = []
    er = o.get('end_replies', [])
    c0, c1, c2 = o['agents'] and None, None, None
    if not any(x[1]=='BATCH' for x in er): f.append('no batch-end reply')
    if sum(1 for x in er if x[1]=='MANUAL') != 1: f.append(f'manual-end reply count wrong {er}')
    if o.get('reassign_reuse_diff') == 'OK' and o.get('c2_agent_after_reuse','').endswith('a2'): f.append('reused request_id with different content applied')
    return f
report(run_both(probe), expect)
