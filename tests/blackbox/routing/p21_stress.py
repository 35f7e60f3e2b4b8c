# Concurrent churn: many customers, agents ending/transferring/declining/status flapping; check invariants.
from rt import *
import threading, random
def check(n, t, agents, convs, o, tag):
    bad = []
    held = {}
    for a in agents:
        ag = t.getagent(a); asg = t.assigned(a)
        if len(asg) > ag.capacity or ag.load > ag.capacity: bad.append(f'{a} over capacity load={ag.load} listed={len(asg)} cap={ag.capacity}')
        for c in asg:
            if c.name in held: bad.append(f'{c.name} held by {held[c.name]} and {a}')
            held[c.name] = a
    pos = {}
    for cn in convs:
        c = t.conv(cn)
        if c.state in (S.CONVERSATION_STATE_ASSIGNED, S.CONVERSATION_STATE_OFFERED):
            if held.get(cn) != c.agent.split('/')[-1]: bad.append(f'{cn} {ST[c.state]} agent={c.agent} but listed by {held.get(cn)}')
        elif cn in held: bad.append(f'{cn} state {ST[c.state]} but in assigned list of {held[cn]}')
        if c.state == S.CONVERSATION_STATE_QUEUED:
            pos.setdefault(c.group, []).append(c.position)
    for g, ps in pos.items():
        if sorted(ps) != list(range(1, len(ps) + 1)): bad.append(f'positions in {g}: {sorted(ps)}')
    # work conservation: queued in group g while an online agent of g has spare capacity (auto mode, no pins)
    for g, ps in pos.items():
        for a in agents:
            ag = t.getagent(a)
            if g in ag.groups and ag.status == S.AGENT_STATUS_ONLINE and ag.load < ag.capacity:
                bad.append(f'work conservation: {len(ps)} wait in {g} but {a} online load {ag.load}/{ag.capacity}')
    o(tag, 'violations', len(bad))
    for b in bad[:10]: print('   ', b)
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, strategy=admin_pb2.STRATEGY_ROUND_ROBIN)
    agents = [f'a{i}' for i in range(6)]
    for i, a in enumerate(agents):
        t.agent(a, ['g1', 'g2'] if i % 2 else ['g1'] if i % 3 else ['g2'], cap=1 + i % 3, status=S.AGENT_STATUS_ONLINE)
    convs = []; lock = threading.Lock(); stop = time.time() + 12
    rnd = random.Random(7)
    def customers(k):
        i = 0
        while time.time() < stop:
            try:
                c = t.post(f'k{k}c{i % 15}', group=rnd.choice(['g1', 'g2']))
                with lock: convs.append(c.name)
            except grpc.RpcError as e:
                print('post err', e.code(), e.details())
            i += 1; time.sleep(0.02)
    def agent_worker(a):
        r2 = random.Random(a)
        while time.time() < stop:
            try:
                asg = t.assigned(a)
                if asg and r2.random() < 0.5:
                    c = r2.choice(asg)
                    x = r2.random()
                    if x < 0.6: t.end(a, c.name)
                    elif x < 0.8: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(a), conversation=c.name, to_group=t.g(r2.choice(['g1', 'g2'])), request_id=rid()))
                    else: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(a), conversation=c.name, to_agent=t.a(r2.choice(agents)), request_id=rid()))
                if r2.random() < 0.05:
                    t.status(a, r2.choice([S.AGENT_STATUS_BUSY, S.AGENT_STATUS_ONLINE, S.AGENT_STATUS_ONLINE]))
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE): print('agent err', a, e.code(), e.details())
            time.sleep(0.01)
    ths = [threading.Thread(target=customers, args=(k,)) for k in range(4)] + [threading.Thread(target=agent_worker, args=(a,)) for a in agents]
    for th in ths: th.start()
    for th in ths: th.join()
    for a in agents: t.status(a, S.AGENT_STATUS_ONLINE)
    time.sleep(1)
    convs = sorted(set(convs))
    print('conversations', len(convs))
    check(n, t, agents, convs, o, 'after churn')
    n.restart(kill=True); time.sleep(1)
    check(n, t, agents, convs, o, 'after kill -9')
if __name__ == "__main__": compare(probe, verbose=True)
