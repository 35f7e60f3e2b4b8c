"""Queue reply after a priority raise uses the new position; keyword + offline interplay;
unreplied alert reaches agent desks."""
from rlib import *

def raise_(n, r):
    q = A.QueueReply(rules=[A.QueueRule(above=0, texts=['pos {{queue_num}}'])])
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(queue=q)))
    e.agent('a1', cap=1)
    e.post('u0', 'x')
    cs = [e.post(f'u{i}', 'hi').conversation.name for i in (1, 2, 3)]
    e.settle()
    e.post('u3', 'urgent', priority=10); e.settle()
    return e.outs(cs[2]), e.conv(cs[2]).position
report('queue reply after raise', diff_run(raise_), ([('QUEUE', 'pos 3'), ('QUEUE', 'pos 1')], 1))

def kw_offline(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(offline=A.OfflineReply(texts=['OFF']),
                          queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q'])])),
                          keywords=[A.KeywordRule(keywords=['price'], texts=['KW'])])
    e = Env(n, 't1', r, st)
    e.agent('a1', online=False)
    c = e.post('u1', 'price?').conversation.name; e.settle()
    return e.outs(c)
report('keyword while offline (impl: keyword replaces offline) [ambiguous]', diff_run(kw_offline), [('KEYWORD', 'KW')])

def desk_alert(n, r):
    e = Env(n, 't1', r, A.TenantSettings(unreplied_alert=dur(1)))
    e.agent('a1', cap=1); e.agent('a2', cap=1)
    evs = {a: [] for a in ('a1', 'a2')}
    calls = []
    import threading
    def listen(a):
        call = n.agent.StreamEvents(AG.StreamAgentEventsRequest(agent=e.a(a))); calls.append(call)
        try:
            for ev in call: evs[a].append(ev.WhichOneof('event'))
        except grpc.RpcError: pass
    for a in evs: threading.Thread(target=listen, args=(a,), daemon=True).start()
    time.sleep(0.5)
    c = e.post('u1', 'hi').conversation.name
    time.sleep(2.5)
    ag = e.conv(c).agent.split('/')[-1]
    for x in calls: x.cancel()
    return {('ASSIGNED' if a == ag else 'OTHER'): v.count('unreplied_alert') for a, v in evs.items()}
report('unreplied alert on the agent desk', diff_run(desk_alert), {'ASSIGNED': 1, 'OTHER': 0})
