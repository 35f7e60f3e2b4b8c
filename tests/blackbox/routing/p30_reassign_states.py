# Supervisor ReassignBatch of queued / offered / bot / pinned conversations, to agent and to group.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r, transfer_to_human=True)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(60), dedicated_timeout=dur(60))
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g2'], cap=5, status=S.AGENT_STATUS_ONLINE)
    t.agent('a3', ['g2'], cap=5)
    t.agent('sup', ['g2'], cap=1, supervisor=True)
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d1'), dedicated_agent=t.a('a1'), request_id=rid()))
    mk = lambda u, lab: (lambda c: (o.lab(c.name, lab), n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c.name, request_id=rid())))[1])(t.post(u))
    off = mk('u1', 'offered'); q = mk('u2', 'queued'); d = mk('d1', 'pinned')
    bot = t.post('u3'); o.lab(bot.name, 'bot')
    for c in [off, q, d, bot]: o('before', o.c(t.conv(c.name)))
    RB = lambda cs, **kw: [(o.lab(x.conversation), x.ok, x.error) for x in n.sup.ReassignBatch(supervisor_pb2.ReassignBatchRequest(supervisor=t.a('sup'), conversations=[c.name for c in cs], request_id=rid(), **kw)).results]
    o('to agent a2', RB([off, q, d, bot], to_agent=t.a('a2')))
    for c in [off, q, d, bot]: o('after to agent', o.c(t.conv(c.name)))
    o('a1 load', t.getagent('a1').load)
    for c in [off, q, d]: o('trans', o.lab(c.name), [(ST[x.to][19:], x.cause, x.agent.split('/')[-1]) for x in t.conv(c.name).transitions])
compare(probe)
