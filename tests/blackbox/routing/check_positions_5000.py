# Check (held): 5003 queued conversations posted on one PostMessages stream: positions are a
# permutation of 1..5003, position_display is exact up to 5000 and "5000+" above, on both routings.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import uuid
def rid(): return uuid.uuid4().hex
N = 5003; T = 'tenants/t1'; G = T + '/groups/g1'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        gen = (channel_pb2.PostMessageRequest(customer=f'{T}/customers/u{i}', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=f'r{i}') for i in range(N))
        names = [x.response.conversation.name for x in n.chan.PostMessages(gen)]
        n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=names[0], request_id=rid()))
        ps = []; bad = 0
        for nm in names[1:]:
            c = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=nm))
            ps.append(c.position)
            exp = str(c.position) if c.position <= 5000 else '5000+'
            if c.position_display != exp: bad += 1
        ok = sorted(ps) == list(range(1, N)) and bad == 0
        print(rname, 'positions permutation of 1..%d:' % (N - 1), sorted(ps) == list(range(1, N)), 'display mismatches:', bad)
        if not ok: fails.append(rname)
print('FAIL' if fails else 'PASS', fails)
