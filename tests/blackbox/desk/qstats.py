# SPEC §8 queue statistics: conversations that waited longer than X s (default 60) in a window
from common import *
def ts(sec):
    x = timestamp_pb2.Timestamp(); x.FromSeconds(int(sec)); return x
def probe(n, name, r):
    t = T(n, 'qs'+name.lower(), r, groups=('g1','g2'))
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10, status=0)
    o = {}
    t0 = time.time()
    c1 = t.post('u1').conversation.name       # waits ~2.5 s then assigned
    c2 = t.post('u2', group=t.g('g2')).conversation.name  # still waiting (no agent in g2)
    time.sleep(2.5)
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a1'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    poll(lambda: t.conv(c1).state == S.CONVERSATION_STATE_ASSIGNED, 5)
    c3 = t.post('u3').conversation.name       # assigned immediately
    c4 = t.post('u4', group=t.g('g2')).conversation.name # queued, short wait, then ended
    n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=c4, request_id=rid()))
    Q = lambda **kw: n.sup.GetQueueStats(supervisor_pb2.GetQueueStatsRequest(tenant=t.t, **kw))
    fmt = lambda q: (q.count, sorted((w.conversation, w.group, w.waited.ToMilliseconds() >= 1000) for w in q.waits))
    o['default'] = fmt(Q())
    o['thr1'] = fmt(Q(threshold=dur(1)))
    o['thr1_count_eq_len'] = Q(threshold=dur(1)).count == len(Q(threshold=dur(1)).waits)
    o['thr0'] = fmt(Q(threshold=dur(0)))  # 0 -> default 60? or every wait?
    o['window_before'] = fmt(Q(threshold=dur(1), end_time=ts(t0 - 10)))
    o['window_after'] = code(lambda: Q(threshold=dur(1), start_time=ts(time.time() + 10)))[0]
    o['window_inverted'] = code(lambda: Q(threshold=dur(1), start_time=ts(time.time()), end_time=ts(t0 - 100)))[0]
    o['neg_thr'] = code(lambda: Q(threshold=duration_pb2.Duration(seconds=-5)))[0]
    o['unknown_tenant'] = code(lambda: n.sup.GetQueueStats(supervisor_pb2.GetQueueStatsRequest(tenant='tenants/nope')))[0]
    o['bad_tenant'] = code(lambda: n.sup.GetQueueStats(supervisor_pb2.GetQueueStatsRequest(tenant='nope')))[0]
    waited = {w.conversation: w.waited.ToMilliseconds() for w in Q(threshold=dur(1)).waits}
    o['c1_waited_plausible'] = 2000 <= waited.get(c1, 0) <= 6000
    n.restart(kill=True)
    o['restart_thr1'] = fmt(Q(threshold=dur(1)))
    return o
def expect(o):
    f = []
    names = [x[0] for x in o.get('thr1', [0, []])[1]]
    if not any(x.endswith('/1') for x in names): f.append('c1 (waited 2.5s) missing at threshold 1s')
    if not any(x.endswith('/2') for x in names): f.append('c2 (still waiting >1s) missing at threshold 1s')
    if o.get('default', [1])[0] != 0: f.append('default threshold counts short waits')
    if o.get('window_inverted') != 'INVALID_ARGUMENT': f.append(f"inverted window: {o.get('window_inverted')}")
    if o.get('neg_thr') != 'INVALID_ARGUMENT': f.append(f"negative threshold: {o.get('neg_thr')}")
    return f
report(run_both(probe), expect)
