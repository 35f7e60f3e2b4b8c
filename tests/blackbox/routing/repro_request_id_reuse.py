# Repro (divergence): a request_id reused for a DIFFERENT call (Accept of another conversation).
# Tenant actor silently returns the first call's answer (a different conversation than the one
# named, and does not act); ACTORS refuses with FAILED_PRECONDITION "request_id ... was used by
# another call". common.proto only defines the retry case; the two routings must agree.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid
from google.protobuf import duration_pb2
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/g1'; A = T + '/agents/a1'
out = {}
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=duration_pb2.Duration(seconds=60)), request_id=rid()))
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=2, groups=[G], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        c1 = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
        c2 = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u2', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
        n.agent.Accept(agent_pb2.AgentConversationRequest(agent=A, conversation=c1.name, request_id='same'))
        try:
            r = n.agent.Accept(agent_pb2.AgentConversationRequest(agent=A, conversation=c2.name, request_id='same'))
            res = f'OK, answer names {"c1 (the first call)" if r.name == c1.name else "c2"}'
        except grpc.RpcError as e:
            res = f'{e.code().name}: {e.details()}'
        st = common_pb2.ConversationState.Name(n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c2.name)).state)
        out[rname] = (res.split(':')[0], st)
        print(rname, 'second Accept(c2) with reused id ->', res, '| c2 now', st)
print('PASS' if out['TENANT_ACTOR'] == out['ACTORS'] else 'FAIL (routings diverge)', out)
