# Dedicated agent: waits while online-but-full, falls back on timeout or offline.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, dedicated_timeout=dur(3))
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g1'], cap=5)
    # a) a1 free, a2 free (a2 has lower occupancy later) -> a1
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d1'), dedicated_agent=t.a('a1'), request_id=rid()))
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d2'), dedicated_agent=t.a('a1'), request_id=rid()))
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d3'), dedicated_agent=t.a('a1'), request_id=rid()))
    t.status('a2', S.AGENT_STATUS_ONLINE)
    c1 = t.post('d1'); o.lab(c1.name, 'c1'); o('a)', o.c(c1))
    # b) a1 full: d2 waits for a1 while a2 idle
    c2 = t.post('d2'); o.lab(c2.name, 'c2'); o('b) post', o.c(c2))
    time.sleep(1); o('b) after 1s', o.c(t.conv(c2.name)))
    o('b) a2 unaccepted', [o.lab(x.name) for x in t.unaccepted('a2')], 'a1 unaccepted', [o.lab(x.name) for x in t.unaccepted('a1')])
    ex = n.sup.ExplainConversation(explain_pb2.ExplainConversationRequest(conversation=c2.name))
    o('b) explain pinned', ex.waiting.pinned_agent.split('/')[-1], ex.waiting.position)
    # timeout -> a2
    got = wait_for(lambda: t.conv(c2.name).state == S.CONVERSATION_STATE_ASSIGNED, timeout=8)
    o('b) after timeout', o.c(t.conv(c2.name)))
    # c) a1 offline -> d3 goes to group immediately
    t.end('a1', c1.name)
    t.status('a1', S.AGENT_STATUS_OFFLINE)
    c3 = t.post('d3'); o.lab(c3.name, 'c3'); o('c) a1 offline', o.c(c3))
compare(probe)
