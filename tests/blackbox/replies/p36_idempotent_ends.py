"""Retries with the same request_id (common.proto) and duplicate entries in a batch never send an
end reply twice."""
from rlib import *

def run(n, r):
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(manual_end=T('MAN'), batch_end=T('BATCH'))))
    e.agent('a1', cap=5); e.agent('s1', sup=True, online=False)
    cs = [e.post(f'u{i}', 'hi').conversation.name for i in range(3)]; e.settle()
    res = []
    for _ in range(2):
        try: n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=cs[0], request_id='end-1')); res.append('ok')
        except grpc.RpcError as x: res.append(x.code().name)
    b1 = n.sup.EndBatch(S.EndBatchRequest(supervisor=e.a('s1'), conversations=[cs[1], cs[1], cs[2]], request_id='b-1'))
    b2 = n.sup.EndBatch(S.EndBatchRequest(supervisor=e.a('s1'), conversations=[cs[1], cs[1], cs[2]], request_id='b-1'))
    e.settle()
    return res, [x.ok for x in b1.results], [x.ok for x in b2.results], [e.outs(c) for c in cs]
report('idempotent end replies', diff_run(run))
