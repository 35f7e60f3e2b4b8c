# Dedicated agent invisible/away/busy and free: pushed or not? last_agent_timeout 0; last agent busy; pinned position.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, dedicated_timeout=dur(60))
    t.group('gl', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, last_agent_preference=True, last_agent_timeout=dur(0))
    t.group('gl2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, last_agent_preference=True, last_agent_timeout=dur(60))
    for st in ['invisible', 'away', 'busy']:
        t.agent(f'd-{st}', ['g1'], cap=2, status=getattr(S, f'AGENT_STATUS_{st.upper()}'))
        n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c(f'c-{st}'), dedicated_agent=t.a(f'd-{st}'), request_id=rid()))
    t.agent('other', ['g1'], cap=5, status=S.AGENT_STATUS_ONLINE)
    for st in ['invisible', 'away', 'busy']:
        c = t.post(f'c-{st}'); o.lab(c.name, f'ded-{st}'); o('dedicated agent', st, o.c(c))
        ex = n.sup.ExplainConversation(explain_pb2.ExplainConversationRequest(conversation=c.name))
        o('   explain', ex.WhichOneof('explanation'), ex.waiting.pinned_agent.split('/')[-1], ex.waiting.position)
    # last agent timeout 0: last agent full -> group immediately
    t.agent('la', ['gl', 'gl2'], cap=1, status=S.AGENT_STATUS_ONLINE)
    t.agent('lb', ['gl', 'gl2'], cap=1)
    c = t.post('ret', group='gl'); o.lab(c.name, 'first'); t.end('la', c.name)
    blocker = t.post('blk', group='gl'); o.lab(blocker.name, 'blocker')  # la full
    t.status('lb', S.AGENT_STATUS_ONLINE)
    c2 = t.post('ret', group='gl'); o.lab(c2.name, 'ret-t0'); o('last agent full, timeout 0', o.c(c2))
    t.end('lb', c2.name) if t.conv(c2.name).agent.endswith('/lb') else None
    # last agent busy (timeout 60): goes to group at once?
    n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=blocker.name, request_id=rid()))
    t.status('la', S.AGENT_STATUS_BUSY)
    # ret's last agent is now lb (served c2) if c2 went to lb
    o('ret last agent', n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('ret'))).last_agent.split('/')[-1])
    c3 = t.post('blk', group='gl2'); o.lab(c3.name, 'blk-2'); o('blk last agent la busy', o.c(c3))
compare(probe)
