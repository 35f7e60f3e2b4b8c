# Transfers: to group keeping entry time / reset; to agent; to full/offline/busy agent; batch.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    for g in ['g1', 'g2']: t.group(g, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=5, status=S.AGENT_STATUS_ONLINE)
    t.agent('sup', ['g1'], cap=1, supervisor=True, status=S.AGENT_STATUS_BUSY)
    cA = t.post('ua'); o.lab(cA.name, 'cA'); cB = t.post('ub'); o.lab(cB.name, 'cB'); cC = t.post('uc'); o.lab(cC.name, 'cC'); cD = t.post('ud'); o.lab(cD.name, 'cD')
    time.sleep(0.05)
    q = []
    for i in range(2):
        c = t.post(f'q{i}', group='g2'); o.lab(c.name, f'q{i}'); q.append(c); time.sleep(0.05)
    tr = lambda c, **kw: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c.name, request_id=rid(), **kw))
    o('keep entry', o.c(tr(cA, to_group=t.g('g2'))))
    o('reset entry', o.c(tr(cB, to_group=t.g('g2'), reset_entry_time=True)))
    for c in [cA, cB] + q: o('g2 now', o.c(t.conv(c.name)))
    o('trans cA', [(ST[x.to][19:], x.cause, x.agent.split('/')[-1]) for x in t.conv(cA.name).transitions])
    # batch reassign to group
    rb = n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[cC.name, cD.name], to_group=t.g('g2'), request_id=rid()))
    o('batch to group', [(o.lab(x.conversation), x.ok, x.error) for x in rb.results])
    for c in [cA, cB, cC, cD] + q: o('g2 after batch', o.c(t.conv(c.name)))
    # agent-to-agent
    t.agent('a2', ['g2'], cap=2, status=S.AGENT_STATUS_ONLINE)
    time.sleep(0.3)
    for c in [cA, cB, cC, cD] + q: o('a2 online', o.c(t.conv(c.name)))
    t.agent('a3', ['g1'], cap=1)  # offline
    held = [c for c in [cA, cB, cC, cD] + q if t.conv(c.name).agent == t.a('a2')]
    x = held[0]
    tra = lambda c, to, frm='a2': err(lambda: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a(frm), conversation=c.name, to_agent=t.a(to), request_id=rid())))
    o('to offline a3', tra(x, 'a3'))
    t.status('a3', S.AGENT_STATUS_BUSY)
    o('to busy a3', tra(x, 'a3'), o.c(t.conv(x.name)))
    t.status('a3', S.AGENT_STATUS_ONLINE)
    time.sleep(0.3)
    o('a3 load', t.getagent('a3').load)
    o('to full a3?', tra(held[-1], 'a3'), o.c(t.conv(held[-1].name)))
    o('a3 load after', t.getagent('a3').load, 'cap', t.getagent('a3').capacity)
    o('to self', tra(held[-1], 'a2'))
    o('to unknown agent', tra(held[-1], 'zz'))
    o('to unknown group', err(lambda: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a2'), conversation=held[-1].name, to_group=t.g('nog'), request_id=rid()))))
    o('no target', err(lambda: n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a2'), conversation=held[-1].name, request_id=rid()))))
    for c in [cA, cB, cC, cD] + q: o('final', o.c(t.conv(c.name)))
    for a in ['a1', 'a2', 'a3']: o(a, 'load', t.getagent(a).load, [o.lab(c.name) for c in t.assigned(a)])
compare(probe)
