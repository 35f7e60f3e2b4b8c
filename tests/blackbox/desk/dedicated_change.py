# Changing / clearing a waiting customer's dedicated agent releases the wait (finding 1)
from common import *
def probe(n, name, r):
    t = T(n, 'dc'+name.lower(), r)
    t.agent('a1', cap=1); t.agent('a2', cap=1); t.agent('a3', cap=1)
    put = lambda u, a, mask=False: n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c(u), dedicated_agent=(t.a(a) if a else ''), request_id=rid(),
        update_mask=field_mask_pb2.FieldMask(paths=['dedicated_agent']) if mask else None))
    o = {}
    put('u0', 'a2'); put('u1', 'a2'); put('u2', 'a3'); put('u3', 'a3')
    c0 = t.post('u0').conversation.name   # a2 full
    c2 = t.post('u2').conversation.name   # a3 full
    c1 = t.post('u1').conversation.name   # waits for a2
    o['c1_waits'] = (S.ConversationState.Name(t.conv(c1).state), t.conv(c1).agent)
    put('u1', None, mask=True)              # cleared: a1 free takes it
    o['c1_after_clear'] = poll(lambda: (lambda x: (S.ConversationState.Name(x.state), x.agent) if x.agent else None)(t.conv(c1)), 5) or 'still waiting'
    c3 = t.post('u3').conversation.name    # waits for a3 (a1,a2,a3 full now)
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c0, request_id=rid()))
    o['c3_waits_a2_free'] = (S.ConversationState.Name(t.conv(c3).state), t.conv(c3).agent)
    put('u3', 'a2', mask=True)             # new dedicated a2, free: at once
    o['c3_after_change'] = poll(lambda: (lambda x: (S.ConversationState.Name(x.state), x.agent) if x.agent else None)(t.conv(c3)), 5) or 'still waiting'
    return o
def expect(o):
    f = []
    if o['c1_after_clear'] == 'still waiting': f.append('clear did not release')
    if o['c3_after_change'] == 'still waiting': f.append('change did not move')
    return f
report(run_both(probe), expect)
