# ReassignBatch to agent: capacity respected per item, offline target refused, mixed states, duplicates; transferred events.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    for g in ['g1', 'g2']: t.group(g, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=5, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g2'], cap=2, status=S.AGENT_STATUS_ONLINE)
    t.agent('a3', ['g2'], cap=2)
    t.agent('sup', ['g1'], cap=1, supervisor=True)
    t.agent('nosup', ['g1'], cap=1)
    cs = []
    for i in range(4):
        c = t.post(f'u{i}'); o.lab(c.name, f'c{i}'); cs.append(c)
    q = t.post('q0', group='g2'); o.lab(q.name, 'q0')   # assigned to a2 (load1)
    q2 = t.post('q1', group='g2'); o.lab(q2.name, 'q1')  # a2 load 2 (full)
    q3 = t.post('q2', group='g2'); o.lab(q3.name, 'q2')  # queued
    RB = lambda convs, **kw: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c.name for c in convs], request_id=rid(), **kw))
    o('to offline a3', [(o.lab(x.conversation), x.ok, x.error) for x in RB(cs[:2], to_agent=t.a('a3')).results])
    o('by non-supervisor', err(lambda: n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('nosup'), conversations=[cs[0].name], to_agent=t.a('a1'), request_id=rid()))))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a2'), conversation=q.name, to_group=t.g('g1'), request_id=rid()))  # a2 load 1
    time.sleep(0.3)
    o('q0 after transfer to g1', o.c(t.conv(q.name)))
    o('a2 load', t.getagent('a2').load, 'q2', o.c(t.conv(q3.name)))
    o('batch 3 to a2 (space 0 or 1)', [(o.lab(x.conversation), x.ok, x.error) for x in RB(cs[:3], to_agent=t.a('a2')).results])
    o('a2 load', t.getagent('a2').load, 'cap', t.getagent('a2').capacity)
    o('queued q2 to agent a1', [(o.lab(x.conversation), x.ok, x.error) for x in RB([q3], to_agent=t.a('a1')).results])
    o('dup in batch', [(o.lab(x.conversation), x.ok, x.error) for x in RB([cs[3], cs[3]], to_group=t.g('g2')).results])
    o('empty batch', err(lambda: RB([], to_group=t.g('g2'))))
    o('no target', err(lambda: RB([cs[3]])))
    o('unknown group', err(lambda: RB([cs[3]], to_group=t.g('zz'))))
    for c in cs + [q, q2, q3]: o('final', o.c(t.conv(c.name)))
    for a in ['a1', 'a2', 'a3']: o(a, 'load', t.getagent(a).load, sorted(o.lab(c.name) for c in t.assigned(a)))
compare(probe)
