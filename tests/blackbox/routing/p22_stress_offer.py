# Concurrent offers/accepts/declines/timeouts and concurrent picks of the same conversation.
from rt import *
import threading, random
from p21_stress import check
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(1))
    t.group('gp', offer_mode=admin_pb2.OFFER_MODE_PULL)
    agents = [f'a{i}' for i in range(5)]
    for i, a in enumerate(agents): t.agent(a, ['g1', 'gp'], cap=1 + i % 2, status=S.AGENT_STATUS_ONLINE)
    convs = []; lock = threading.Lock(); stop = time.time() + 10
    picked = {}
    def customers(k):
        i = 0
        while time.time() < stop:
            c = t.post(f'k{k}c{i % 10}', group=['g1', 'gp'][i % 2])
            with lock: convs.append(c.name)
            i += 1; time.sleep(0.03)
    def agent_worker(a):
        r2 = random.Random(a)
        while time.time() < stop:
            try:
                for c in t.assigned(a):
                    if c.state == S.CONVERSATION_STATE_OFFERED:
                        x = r2.random()
                        if x < 0.5: t.accept(a, c.name)
                        elif x < 0.7: t.decline(a, c.name)
                    elif r2.random() < 0.4: t.end(a, c.name)
                ul = t.unaccepted(a)
                pull = [c for c in ul if c.group.endswith('/gp')]
                if pull:
                    c = pull[0]
                    try:
                        t.pick(a, c.name)
                        with lock:
                            if c.name in picked: print('DOUBLE PICK', c.name, picked[c.name], a)
                            picked[c.name] = a
                    except grpc.RpcError as e:
                        if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED): print('pick err', e.code(), e.details())
            except grpc.RpcError as e:
                if e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED): print('agent err', a, e.code(), e.details())
    ths = [threading.Thread(target=customers, args=(k,)) for k in range(3)] + [threading.Thread(target=agent_worker, args=(a,)) for a in agents]
    for th in ths: th.start()
    for th in ths: th.join()
    time.sleep(2)
    convs = sorted(set(convs)); print('conversations', len(convs), 'picked', len(picked))
    # offer-mode: check only capacity/consistency (work conservation check not meaningful w/ declines)
    bad = []
    for a in agents:
        ag = t.getagent(a); lst = t.assigned(a)
        if ag.load > ag.capacity or len(lst) > ag.capacity: bad.append((a, ag.load, len(lst), ag.capacity))
    held = {}
    for a in agents:
        for c in t.assigned(a):
            if c.name in held: bad.append(('two places', c.name))
            held[c.name] = a
    for cn in convs:
        c = t.conv(cn)
        if c.state in (S.CONVERSATION_STATE_ASSIGNED, S.CONVERSATION_STATE_OFFERED) and held.get(cn) != c.agent.split('/')[-1]: bad.append(('mismatch', cn, ST[c.state], c.agent, held.get(cn)))
        if c.state not in (S.CONVERSATION_STATE_ASSIGNED, S.CONVERSATION_STATE_OFFERED) and cn in held: bad.append(('listed but', cn, ST[c.state]))
    o('violations', len(bad)); print(bad[:10])
compare(probe)
