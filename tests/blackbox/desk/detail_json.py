# events.proto detail_json: "The same fields as detail, as one JSON object with snake_case keys and resource names (no internal numbers)"
from common import *
import json
from google.protobuf import json_format
def probe(n, name, r):
    st = admin_pb2.TenantSettings(unreplied_alert=dur(1))
    t = T(n, 'dj'+name.lower(), r, settings=st, groups=('g1','g2'))
    t.agent('a1', cap=1); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('sup', sup=True, status=0)
    ev = tenant_stream(n, t.t)
    c1 = t.post('u1').conversation.name; c2 = t.post('u2').conversation.name
    t.send('a1', c1, 'x')
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c1, to_group=t.g('g2'), request_id=rid()))
    n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c2, score=3, request_id=rid()))
    n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c1, c2], request_id=rid()))
    ev.wait(lambda e: e.type == 'ended', 10, 2)
    time.sleep(1.5)
    o = {}
    mism = []
    for e in ev.items:
        d = json.loads(e.detail_json) if e.detail_json else None
        det = getattr(e, e.WhichOneof('detail')) if e.WhichOneof('detail') else None
        ref = json_format.MessageToDict(det, preserving_proto_field_name=True, always_print_fields_with_no_presence=True) if det is not None else None
        # compare: every key in ref present in d with equal value (numbers as ints)
        if d is None or ref is None: mism.append((e.type, 'missing')); continue
        for k, v in ref.items():
            dv = d.get(k)
            if isinstance(v, str) and v.isdigit(): v = int(v)
            if dv != v and not (v in ('', [], 0) and dv in (None, '', [], 0)):
                mism.append((e.type, k, v, dv))
        for k in d:
            if k not in ref and d[k] is not None: mism.append((e.type, 'extra', k, d[k]))
    o['mismatch'] = mism
    o['types'] = sorted(set(e.type for e in ev.items))
    ev.cancel()
    return o
def expect(o):
    return [f'detail_json != detail: {m}' for m in o['mismatch']]
report(run_both(probe), expect)
