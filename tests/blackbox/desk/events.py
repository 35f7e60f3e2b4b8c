# SPEC §9 events opened, queued, assigned, transferred, ended, rated, unreplied alert, agent status changed; resumable cursor
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(unreplied_alert=dur(1))
    t = T(n, 'ev'+name.lower(), r, settings=st, groups=('g1','g2'))
    t.agent('a1', cap=1); t.agent('a2', groups=('g2',), status=0); t.agent('a3', cap=1, status=S.AGENT_STATUS_BUSY)
    ev = tenant_stream(n, t.t)
    s1 = agent_stream(n, t.a('a1'))
    c1 = t.post('u1', 'hello').conversation.name
    c2 = t.post('u2', 'queued').conversation.name   # a1 full: queued
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a3'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))  # c2 -> a3
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c1, to_agent=t.a('a2'), request_id=rid()))
    # unreplied alert: customer message on c2 stays unanswered >1s
    t.post('u2', 'anyone?')
    o = {}
    al = ev.wait(lambda e: e.type == 'unreplied_alert', 15)
    o['alert'] = [(e.conversation, list(e.unreplied_alert.notify)) for e in al]
    n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c1, score=5, request_id=rid()))
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c1, request_id=rid()))
    ev.wait(lambda e: e.type == 'ended', 5)
    time.sleep(0.5)
    evs = list(ev.items)
    o['types'] = [(e.type, e.conversation, e.WhichOneof('detail') == e.type) for e in evs if e.type != 'first_response']
    o['cursors_increasing'] = all(a.cursor < b.cursor for a, b in zip(evs, evs[1:]))
    o['opened'] = [(e.opened.customer, e.opened.channel, e.opened.group) for e in evs if e.type == 'opened']
    o['queued'] = [(e.conversation, e.queued.group) for e in evs if e.type == 'queued']
    o['assigned'] = [(e.conversation, e.assigned.agent, e.assigned.via) for e in evs if e.type == 'assigned']
    o['transferred'] = [(e.conversation, e.agent, e.transferred.from_agent, e.transferred.to_agent) for e in evs if e.type == 'transferred']
    o['ended'] = [(e.conversation, e.ended.cause, e.ended.agent, e.ended.from_state) for e in evs if e.type == 'ended']
    o['detail_json_present'] = all(e.detail_json for e in evs)
    o['a1_alert_stream'] = len(s1.items) and [kind(e) for e in s1.items if kind(e) == 'unreplied_alert']
    # resume from the middle
    mid = evs[len(evs)//2].cursor
    rs = tenant_stream(n, t.t, after=mid)
    rs.wait(lambda e: e.cursor == evs[-1].cursor, 5)
    o['resume_ok'] = [e.cursor for e in rs.items] == [e.cursor for e in evs if e.cursor > mid]
    rs.cancel(); ev.cancel()
    last = evs[-1].cursor
    n.restart(kill=True)
    rs = tenant_stream(n, t.t, after=0)
    rs.wait(lambda e: e.cursor >= last, 5)
    time.sleep(0.3)
    o['restart_replay_same'] = [(e.cursor, e.type) for e in rs.items if e.cursor <= last] == [(e.cursor, e.type) for e in evs]
    # new event after restart has higher cursor
    t.post('u5', 'after')
    new = rs.wait(lambda e: e.cursor > last, 5)
    o['restart_new_cursor'] = bool(new)
    rs.cancel()
    # resume agent stream
    sc = [e.cursor for e in s1.items]
    o['agent_cursors_increasing'] = all(a < b for a, b in zip(sc, sc[1:]))
    s1b = agent_stream(n, t.a('a1'), after=sc[0] if sc else 0)
    s1b.wait(lambda e: e.cursor == sc[-1], 5)
    o['agent_resume'] = [e.cursor for e in s1b.items if e.cursor <= sc[-1]] == sc[1:]
    s1b.cancel(); s1.cancel()
    o['future_cursor'] = code(lambda: next(iter(n.events.StreamEvents(events_pb2.StreamEventsRequest(tenant=t.t, after_cursor=10**15), timeout=1))))[0]
    o['unknown_tenant'] = code(lambda: next(iter(n.events.StreamEvents(events_pb2.StreamEventsRequest(tenant='tenants/zzz'), timeout=2))))[0]
    o['unknown_agent'] = code(lambda: next(iter(n.agent.StreamEvents(agent_pb2.StreamAgentEventsRequest(agent=t.a('ghost')), timeout=2))))[0]
    return o
def expect(o):
    f = []
    types = [x[0] for x in o.get('types', [])]
    for ty in ('opened','queued','assigned','transferred','ended','rated','unreplied_alert','agent_status_changed'):
        if ty not in types: f.append(f'missing event type {ty}')
    if not all(x[2] for x in o.get('types', [])): f.append('detail case != type')
    for k in ('cursors_increasing','resume_ok','restart_replay_same','restart_new_cursor','agent_resume'):
        if not o.get(k): f.append(k)
    return f
report(run_both(probe), expect)
