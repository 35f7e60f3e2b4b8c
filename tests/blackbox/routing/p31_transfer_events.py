# Tenant event stream for transfers and reassignments.
from rt import *
import threading
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=3, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g1'], cap=3)
    t.agent('sup', ['g2'], cap=1, supervisor=True)
    ev = []
    def rd():
        try:
            for e in n.events.StreamEvents(events_pb2.StreamEventsRequest(tenant='tenants/t1')): ev.append(e)
        except grpc.RpcError: pass
    threading.Thread(target=rd, daemon=True).start(); time.sleep(0.2)
    c1 = t.post('u1'); o.lab(c1.name, 'c1'); c2 = t.post('u2'); o.lab(c2.name, 'c2')
    t.status('a2', S.AGENT_STATUS_ONLINE)
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c1.name, to_agent=t.a('a2'), request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c2.name, to_group=t.g('g2'), request_id=rid()))
    time.sleep(0.2)
    n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c2.name], to_group=t.g('g1'), request_id=rid()))
    time.sleep(0.5)
    for e in ev:
        if e.type in ('agent_status_changed',): continue
        d = e.WhichOneof('detail')
        s = str(getattr(e, d)).replace('\n', ' ') if d else ''
        import re; s = re.sub(r'waited_ms: \d+', 'waited_ms: N', s)
        o(o.lab(e.conversation), e.type, e.agent.split('/')[-1], s)
compare(probe)
