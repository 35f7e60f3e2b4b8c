# Oversized requests (> grpc.max_request_bytes 64 KiB): status code and message
from common import *
def probe(n, name, r):
    t = T(n, 'ov'+name.lower(), r)
    t.agent('a1'); t.agent('sup', sup=True, status=0)
    c = t.post('u1').conversation.name
    o = {}
    o['note_70k'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, note='x'*70000, request_id=rid())))
    o['endbatch_5000'] = code(lambda: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c]*5000, request_id=rid())))
    o['endbatch_1001'] = code(lambda: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c]*1001, request_id=rid())))
    return o
def expect(o):
    return [f'{k}: {v[0]} ({v[1][:80]})' for k, v in o.items() if v[0] not in ('INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED')]
report(run_both(probe), expect)
