# Agent desk event stream for offer/decline/timeout/accept/transfer/end/offline, both routings.
from rt import *
import threading
def probe(n, r, o):
    t = T(n, 't1', r, offline_grace=dur(1))
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(2))
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1', 'g2'], cap=2)
    t.agent('a2', ['g1'], cap=2)
    evs = {'a1': [], 'a2': []}
    def rd(a):
        try:
            for e in n.agent.StreamEvents(agent_pb2.StreamAgentEventsRequest(agent=t.a(a))):
                k = e.WhichOneof('event'); evs[a].append((e.conversation, k, str(getattr(e, k)).replace('\n', ' ')))
        except grpc.RpcError: pass
    for a in evs: threading.Thread(target=rd, args=(a,), daemon=True).start()
    time.sleep(0.3)
    c1 = t.post('u1'); o.lab(c1.name, 'c1')
    t.status('a1', S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    t.decline('a1', c1.name); time.sleep(0.3)
    t.status('a2', S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    wait_for(lambda: t.conv(c1.name).state == S.CONVERSATION_STATE_QUEUED, timeout=5); time.sleep(0.3)  # a2 times out
    t.status('a2', S.AGENT_STATUS_BUSY); t.status('a2', S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    c2 = t.post('u2'); o.lab(c2.name, 'c2'); time.sleep(0.3)
    for a in ['a1', 'a2']:
        for c in t.assigned(a):
            if c.state == S.CONVERSATION_STATE_OFFERED: t.accept(a, c.name)
    time.sleep(0.3)
    holder = t.conv(c2.name).agent.split('/')[-1] or t.conv(c1.name).agent.split('/')[-1]
    for c in t.assigned(holder):
        n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(holder), conversation=c.name, to_group=t.g('g2'), request_id=rid()))
    time.sleep(0.5)
    for c in [c1, c2]: o('state', o.c(t.conv(c.name)))
    t.status('a1', S.AGENT_STATUS_OFFLINE); time.sleep(2)
    for c in [c1, c2]: o('state after a1 offline', o.c(t.conv(c.name)))
    for a in evs:
        for e in evs[a]: o(a, o.lab(e[0]), e[1], e[2])
compare(probe)
