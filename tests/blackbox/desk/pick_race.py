# Concurrent Pick from the unaccepted list: each conversation to exactly one agent; capacity; lists and streams consistent
from common import *
from concurrent.futures import ThreadPoolExecutor
def probe(n, name, r):
    t = T(n, 'pr'+name.lower(), r, mode=admin_pb2.OFFER_MODE_PULL)
    for a in ('a1','a2','a3'): t.agent(a, cap=6)
    ss = {a: agent_stream(n, t.a(a)) for a in ('a1','a2','a3')}
    cs = [t.post(f'u{i}').conversation.name for i in range(15)]
    def pick(args):
        a, c = args
        return a, c, code(lambda: n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a(a), conversation=c, request_id=rid())))[0]
    jobs = [(a, c) for c in cs for a in ('a1','a2','a3')]
    import random; random.seed(1); random.shuffle(jobs)
    with ThreadPoolExecutor(12) as ex: res = list(ex.map(pick, jobs))
    o = {}
    wins = {}
    for a, c, cd in res:
        if cd == 'OK': wins.setdefault(c, []).append(a)
    o['multi_win'] = [c for c, w in wins.items() if len(w) > 1]
    o['codes'] = sorted(set(cd for _, _, cd in res))
    o['assigned_total'] = sum(1 for c in cs if t.conv(c).state == S.CONVERSATION_STATE_ASSIGNED)
    o['winner_matches_state'] = all(t.conv(c).agent.endswith('/' + w[0]) for c, w in wins.items() if len(w) == 1)
    loads = {a: len(t.assigned(a)) for a in ('a1','a2','a3')}
    o['cap_ok'] = all(v <= 6 for v in loads.values())
    o['unacc_left'] = sorted(len(t.unacc(a)) for a in ('a1','a2','a3'))
    time.sleep(1)
    for a, s in ss.items():
        got = set(e.conversation for e in s.items if kind(e)=='assigned')
        if got != set(t.assigned(a)): o['stream_mismatch_'+a] = (sorted(got), sorted(t.assigned(a)))
        # net unaccepted from events
        net = set()
        for e in s.items:
            if kind(e) == 'unaccepted_added': net.add(e.conversation)
            elif kind(e) == 'unaccepted_removed': net.discard(e.conversation)
        if net != set(t.unacc(a)): o['unacc_event_mismatch_'+a] = (sorted(net), sorted(t.unacc(a)))
        s.cancel()
    return o
def expect(o):
    f = []
    if o['multi_win']: f.append(f"conversations picked by 2 agents {o['multi_win']}")
    if o['assigned_total'] != 15: f.append(f"assigned {o['assigned_total']}")
    if not o['cap_ok']: f.append('capacity exceeded')
    f += [f'{k}: {v}' for k, v in o.items() if 'mismatch' in k]
    if any(c in ('INTERNAL','UNKNOWN') for c in o['codes']): f.append(f"codes {o['codes']}")
    return f
report(run_both(probe), expect)
