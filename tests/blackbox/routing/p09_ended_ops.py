# Operations on an ended conversation / unknown conversation / bad names: status codes per routing.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=3, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g1'], cap=3, status=S.AGENT_STATUS_ONLINE)
    t.agent('sup', ['g1'], cap=3, supervisor=True)
    ce = t.post('u1'); o.lab(ce.name, 'CE'); t.end(ce.agent.split('/')[-1], ce.name)
    cq = t.post('u2', group='g2'); o.lab(cq.name, 'CQ')
    cu = 'tenants/t1/conversations/999999999'; o.lab(cu, 'CU')
    bad = 'tenants/t1/conversations/abc'; o.lab(bad, 'BAD')
    ot = 'tenants/t2/conversations/1'
    A = t.a('a1')
    ops = {
      'get': lambda c: n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c)),
      'accept': lambda c: t.accept('a1', c),
      'decline': lambda c: t.decline('a1', c),
      'pick': lambda c: t.pick('a1', c),
      'end': lambda c: t.end('a1', c),
      'transfer_agent': lambda c: n.agent.Transfer(agent_pb2.TransferRequest(agent=A, conversation=c, to_agent=t.a('a2'), request_id=rid())),
      'transfer_group': lambda c: n.agent.Transfer(agent_pb2.TransferRequest(agent=A, conversation=c, to_group=t.g('g1'), request_id=rid())),
      'sup_end': lambda c: n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=c, request_id=rid())),
      'close': lambda c: n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=c, request_id=rid())),
      'request_human': lambda c: n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c, request_id=rid())),
      'explain': lambda c: n.sup.ExplainConversation(explain_pb2.ExplainConversationRequest(conversation=c)),
      'markread': lambda c: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=A, conversation=c, request_id=rid())),
      'send': lambda c: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=A, conversation=c, text='x', request_id=rid())),
      'bothost': lambda c: n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=A, conversation=c, on=True, request_id=rid())),
      'reassign_batch': lambda c: print_batch(o, n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c], to_agent=t.a('a2'), request_id=rid()))),
      'end_batch': lambda c: print_batch(o, n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c], request_id=rid()))),
    }
    for label, c in [('ended', ce.name), ('queued-other-group', cq.name), ('unknown', cu), ('bad', bad), ('othertenant', ot), ('empty', '')]:
        for op, f in ops.items():
            e = err(lambda: f(c))
            o(label, op, e if e else 'OK')
def print_batch(o, r):
    o('   batch', [(x.ok, x.error) for x in r.results])
compare(probe)
