# Races: customer closes while router assigns/offers; supervisor ends while agent transfers; check no leaked load.
from rt import *
import threading, random
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(5))
    agents = [f'a{i}' for i in range(4)]
    for a in agents: t.agent(a, ['g1', 'g2'], cap=3, status=S.AGENT_STATUS_ONLINE)
    t.agent('sup', ['g1'], cap=1, supervisor=True)
    stop = time.time() + 10; convs = []; lock = threading.Lock()
    def cust(k):
        rr = random.Random(k); i = 0
        while time.time() < stop:
            try:
                c = t.post(f'k{k}x{i}', group=rr.choice(['g1', 'g2']))
                with lock: convs.append(c.name)
                if rr.random() < 0.7:
                    n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=c.name, request_id=rid()))
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND): print('cust err', e.code(), e.details())
            i += 1
    def ag(a):
        rr = random.Random(a)
        while time.time() < stop:
            try:
                for c in t.assigned(a):
                    x = rr.random()
                    if c.state == S.CONVERSATION_STATE_OFFERED: t.accept(a, c.name)
                    elif x < 0.3: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(a), conversation=c.name, to_agent=t.a(rr.choice(agents)), request_id=rid()))
                    elif x < 0.5: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(a), conversation=c.name, to_group=t.g('g1'), request_id=rid()))
                    elif x < 0.7: t.end(a, c.name)
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT): print('agent err', e.code(), e.details())
    def sup():
        rr = random.Random(1)
        while time.time() < stop:
            with lock: sample = rr.sample(convs, min(5, len(convs)))
            try:
                if rr.random() < 0.5: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=sample, request_id=rid()))
                else: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=sample, to_group=t.g('g2'), request_id=rid()))
            except grpc.RpcError as e: print('sup err', e.code(), e.details())
            time.sleep(0.05)
    ths = [threading.Thread(target=cust, args=(k,)) for k in range(4)] + [threading.Thread(target=ag, args=(a,)) for a in agents] + [threading.Thread(target=sup)]
    for th in ths: th.start()
    for th in ths: th.join()
    time.sleep(1)
    print('conversations', len(convs))
    # close every remaining open conversation; then all loads must be zero
    for cn in convs:
        c = t.conv(cn)
        if c.state != S.CONVERSATION_STATE_ENDED:
            n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=cn, request_id=rid()))
    time.sleep(1)
    bad = []
    for a in agents:
        ag_ = t.getagent(a); lst = t.assigned(a)
        if ag_.load or lst: bad.append((a, ag_.load, [(x.name, ST[x.state]) for x in lst]))
    lb = n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant='tenants/t1'))
    o('leaks', len(bad), 'live in_progress', lb.in_progress)
    for b in bad: print('  ', b)
    for a in agents: print('  unaccepted', a, len(t.unaccepted(a)))
compare(probe)
