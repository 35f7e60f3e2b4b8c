# SPEC §7 via transfer-to-group + pick, supervisor ReassignBatch, restart in between; unreplied alert for a queued conversation -> all group members
from common import *
def texts(h): return [m.text for m in h]
def probe(n, name, r):
    st = admin_pb2.TenantSettings(unreplied_alert=dur(1))
    t = T(n, 'h2'+name.lower(), r, settings=st, mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('sup', sup=True, status=0); t.agent('a1'); t.agent('a2'); t.agent('a3'); t.agent('off', status=0)
    ev = tenant_stream(n, t.t)
    o = {}
    c = t.post('u1', 'c1').conversation.name
    al = ev.wait(lambda e: e.type=='unreplied_alert' and e.conversation==c, 15)
    o['queued_alert_notify'] = sorted(al[0].unreplied_alert.notify) if al else None
    n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    t.send('a1', c, 'r1')
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_group=t.g('g1'), request_id=rid()))
    t.post('u1', 'c2-while-queued')
    o['a1_after_tr'] = texts(t.hist('a1', c))
    n.restart(kill=True)
    n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid()))
    o['a2_after_pick'] = texts(t.hist('a2', c))
    t.send('a2', c, 'r2')
    n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c], to_agent=t.a('a3'), request_id=rid()))
    t.post('u1', 'c3')
    o['a3'] = texts(t.hist('a3', c))
    o['a2'] = texts(t.hist('a2', c))
    o['a1'] = texts(t.hist('a1', c))
    # paging of history
    h = n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=t.a('a3'), conversation=c, page=common_pb2.PageRequest(page_size=2)))
    pages = [texts(h.messages)]
    tok = h.next_page_token
    while tok and len(pages) < 10:
        h = n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=t.a('a3'), conversation=c, page=common_pb2.PageRequest(page_size=2, page_token=tok)))
        pages.append(texts(h.messages)); tok = h.next_page_token
    o['paged'] = [x for p in pages for x in p]
    h = n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=t.a('a1'), conversation=c, page=common_pb2.PageRequest(page_size=1)))
    pages = [texts(h.messages)]; tok = h.next_page_token
    while tok and len(pages) < 10:
        h = n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=t.a('a1'), conversation=c, page=common_pb2.PageRequest(page_size=1, page_token=tok)))
        pages.append(texts(h.messages)); tok = h.next_page_token
    o['a1_paged'] = [x for p in pages for x in p]
    # a1's token used by a3? (token of same call but other agent)
    ev.cancel()
    return o
def expect(o):
    f = []
    if o.get('a1_after_tr') and 'c2-while-queued' in o['a1_after_tr']: f.append('a1 sees message after handing over')
    if 'c2-while-queued' not in o.get('a2_after_pick', []) or 'c1' not in o.get('a2_after_pick', []): f.append('a2 misses history')
    if any(x in o.get('a2', []) for x in ('c3',)): f.append('a2 sees after reassignment')
    if any(x in o.get('a1_paged', []) for x in ('c2-while-queued','r2','c3')): f.append('paging leaks to a1')
    if o.get('paged') != o.get('a3'): f.append('paging differs from full read')
    qn = o.get('queued_alert_notify') or []
    if sorted(qn) != sorted(['tenants/T/agents/a1','tenants/T/agents/a2','tenants/T/agents/a3','tenants/T/agents/off','tenants/T/agents/sup']) and sorted(qn) != sorted(['tenants/T/agents/a1','tenants/T/agents/a2','tenants/T/agents/a3']):
        f.append(f'queued alert notify {qn}')
    return f
report(run_both(probe), expect)
