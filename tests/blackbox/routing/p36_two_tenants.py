# Two tenants on one node (one per routing) with identical ids: no cross-talk in routing, lists, or ids.
from rt import *
with Node() as n:
    ta = T(n, 'ta', admin_pb2.TENANT_ROUTING_TENANT_ACTOR); ac = T(n, 'ac', admin_pb2.TENANT_ROUTING_ACTORS)
    for t in (ta, ac):
        t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
        t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    res = {}
    for t in (ta, ac):
        c1 = t.post('u1'); c2 = t.post('u2')
        res[t.t] = (c1, c2)
        print(t.t, c1.name, ST[c1.state], c1.agent, '|', c2.name, ST[c2.state], c2.position)
    for t in (ta, ac):
        print(t.t, 'assigned', [c.name for c in t.assigned('a1')], 'unaccepted', [c.name for c in t.unaccepted('a1')])
    # cross-tenant: agent of ta acting on ac conversation
    print('cross end', err(lambda: n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=ta.a('a1'), conversation=res['ac'][0].name, request_id=rid()))))
    print('cross get (ac conv id in ta)', err(lambda: n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=res['ac'][0].name.replace('/ac/', '/ta/')))))
    ok = all(c.name.startswith(f'tenants/{k}/') for k, v in res.items() for c in v)
    print('PASS' if ok else 'FAIL')
