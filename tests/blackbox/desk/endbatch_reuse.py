# EndBatch / ReassignBatch: retry same id -> same answer; same id with a different list must not silently answer for other conversations
from common import *
def probe(n, name, r):
    t = T(n, 'eb'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10); t.agent('a2', cap=10, status=S.AGENT_STATUS_BUSY)
    cs = [t.post(f'u{i}').conversation.name for i in range(4)]
    o = {}
    X = rid()
    EB = lambda rq, lst: [(x.conversation, x.ok) for x in n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=lst, request_id=rq)).results]
    o['first'] = EB(X, cs[:2])
    o['retry'] = EB(X, cs[:2])
    o['reuse_other_list'] = code(lambda: EB(X, cs[2:]))
    try: o['reuse_other_answer'] = EB(X, cs[2:])
    except grpc.RpcError as e: o['reuse_other_answer'] = e.code().name
    o['states'] = [S.ConversationState.Name(t.conv(c).state) for c in cs]
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    Y = rid()
    RB = lambda rq, lst: [(x.conversation, x.ok) for x in n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=lst, to_agent=t.a('a2'), request_id=rq)).results]
    o['r_first'] = RB(Y, cs[2:3])
    o['r_retry'] = RB(Y, cs[2:3])
    o['r_reuse_other'] = code(lambda: RB(Y, cs[3:4]))
    o['agents'] = [t.conv(c).agent for c in cs[2:]]
    n.restart(kill=True)
    o['retry_after_restart'] = EB(X, cs[:2])
    return o
def expect(o):
    f = []
    if o['retry'] != o['first']: f.append('EndBatch retry answer differs')
    ro = o['reuse_other_list']
    if ro[0] == 'OK': f.append(f'EndBatch reused id with another list answered OK (states {o["states"]})')
    rr = o['r_reuse_other']
    if rr[0] == 'OK': f.append(f'ReassignBatch reused id with another list answered OK (agents {o["agents"]})')
    return f
report(run_both(probe), expect)
