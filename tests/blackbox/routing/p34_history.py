# Receiving agent sees earlier transcript after transfer/reassign; earlier agent does not see later messages.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=2, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g1'], cap=2)
    t.agent('sup', ['g1'], cap=1, supervisor=True)
    c = t.post('u1', text='m1'); o.lab(c.name, 'c1')
    n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=t.a('a1'), conversation=c.name, text='a1 reply', request_id=rid()))
    t.post('u1', text='m2')
    t.status('a2', S.AGENT_STATUS_ONLINE)
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c.name, to_agent=t.a('a2'), request_id=rid()))
    t.post('u1', text='m3 after handover')
    n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=t.a('a2'), conversation=c.name, text='a2 reply', request_id=rid()))
    H = lambda a: [(m.sender, m.text) for m in n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=t.a(a), conversation=c.name)).messages]
    o('a2 history', H('a2'))
    o('a1 history', err(lambda: H('a1')) or H('a1'))
    o('sup history', H('sup'))
    n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c.name], to_agent=t.a('a1'), request_id=rid()))
    o('a1 history after getting it back', H('a1'))
compare(probe)
