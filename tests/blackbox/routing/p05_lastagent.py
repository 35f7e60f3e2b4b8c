# Last-agent affinity: preference, timeout, offline fallback; dedicated agent going offline while waited for.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, last_agent_preference=True, last_agent_timeout=dur(3), dedicated_timeout=dur(60))
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    t.agent('a2', ['g1'], cap=5)
    c0 = t.post('u1'); o.lab(c0.name, 'c0'); o('first', o.c(c0))
    t.end('a1', c0.name)
    o('customer last_agent', n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))).last_agent)
    t.status('a2', S.AGENT_STATUS_ONLINE)
    # a1 has 0 load, a2 0 load -> a1 preferred
    c1 = t.post('u1'); o.lab(c1.name, 'c1'); o('return a1 free', o.c(c1))
    # second customer served by a1 ... make a1 full (c1 holds it), u3 whose last agent is a1 waits
    t.end('a1', c1.name)
    cx = t.post('u3'); o.lab(cx.name, 'cx'); o('u3 first', o.c(cx))  # both free; strategy picks
    # make u3's last agent a1 deterministic: transfer to a1
    if cx.agent != t.a('a1'):
        n.agent.Transfer(agent_pb2.TransferRequest(agent=cx.agent, conversation=cx.name, to_agent=t.a('a1'), request_id=rid()))
    o('u3 now', o.c(t.conv(cx.name)))
    t.end('a1', cx.name)
    o('u3 last_agent', n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u3'))).last_agent)
    c2 = t.post('u1'); o.lab(c2.name, 'c2'); o('u1 again', o.c(c2))
    c3 = t.post('u3'); o.lab(c3.name, 'c3'); o('u3 again (a1 full)', o.c(c3))
    time.sleep(1); o('u3 1s', o.c(t.conv(c3.name)))
    wait_for(lambda: t.conv(c3.name).state != S.CONVERSATION_STATE_QUEUED, timeout=8)
    o('u3 after timeout', o.c(t.conv(c3.name)))
    # last agent offline -> group at once
    t.end(t.conv(c3.name).agent.split('/')[-1] if False else 'a2', c3.name) if t.conv(c3.name).agent == t.a('a2') else None
    n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=c2.name, request_id=rid()))
    t.status('a1', S.AGENT_STATUS_OFFLINE)
    c4 = t.post('u1'); o.lab(c4.name, 'c4'); o('u1 a1 offline', o.c(c4))
    # dedicated agent goes offline while conv waits for it
    t.status('a1', S.AGENT_STATUS_ONLINE)
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d1'), dedicated_agent=t.a('a1'), request_id=rid()))
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('d2'), dedicated_agent=t.a('a1'), request_id=rid()))
    d1 = t.post('d1'); o.lab(d1.name, 'd1'); o('d1', o.c(d1))
    d2 = t.post('d2'); o.lab(d2.name, 'd2'); o('d2 waits', o.c(d2))
    t.status('a1', S.AGENT_STATUS_OFFLINE)
    time.sleep(0.5)
    o('d2 after a1 offline', o.c(t.conv(d2.name)))
    o('d1 after a1 offline', o.c(t.conv(d1.name)))
compare(probe)
