# Repro: references to deleted resources. common.proto: "A reference to a resource deleted since
# reads as empty, never as a dangling name" and every reference is a full resource name.
# ACTORS: after DeleteAgent/DeleteGroup, an ended conversation's served_by / transitions[].agent /
# group read 'tenants/t1/agents/1', 'tenants/t1/groups/2' (internal numbers, not even the ids);
# DeleteGroup of a group a customer is routed to is accepted (tenant actor refuses with
# FAILED_PRECONDITION), after which the customer's next message fails NOT_FOUND naming
# 'skill group tenants/t1/groups/2' while GetCustomer shows no group.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid, re
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G3 = T + '/groups/g3'; A = T + '/agents/a1'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G3, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=1, groups=[G3], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=f'{T}/customers/u1', group=G3, request_id=rid()))
        c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', request_id=rid())).conversation
        n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=A, conversation=c.name, request_id=rid()))
        n.admin.DeleteAgent(admin_pb2.DeleteAgentRequest(name=A, request_id=rid()))
        try:
            n.admin.DeleteGroup(admin_pb2.DeleteGroupRequest(name=G3, request_id=rid())); d = 'OK'
        except grpc.RpcError as e: d = f'{e.code().name}: {e.details()}'
        cc = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c.name))
        refs = [cc.group] + list(cc.served_by) + [x.agent for x in cc.transitions]
        print(rname, 'DeleteGroup(customer routed to it):', d)
        print(rname, 'ended conversation refs: group', repr(cc.group), 'served_by', list(cc.served_by), 'transition agents', [x.agent for x in cc.transitions])
        dangling = [x for x in refs if re.fullmatch(r'tenants/t1/(agents|groups)/\d+', x) or x in (A,)]
        if dangling: fails.append((rname, 'dangling', dangling))
        if d == 'OK':
            try:
                n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='again', request_id=rid())); p = 'OK'
            except grpc.RpcError as e: p = f'{e.code().name}: {e.details()}'
            cu = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=f'{T}/customers/u1'))
            print(rname, 'customer.group now', repr(cu.group), '| next message:', p)
            if re.search(r'groups/\d+', p): fails.append((rname, 'internal id in error'))
print('FAIL' if fails else 'PASS', fails)
