# Repro: lowering an agent's capacity via PutAgent. Spec §3 "An agent never holds more
# assigned + offered conversations than its capacity."
# Case A: capacity 3 -> 1 while idle, then 3 customers write: agent must get exactly 1.
# Case B: capacity 2 with 2 assigned -> PutAgent capacity 1 (tenant actor refuses with
# FAILED_PRECONDITION; actors accept); after ending one conversation a queued one must NOT
# be assigned (load would be 2 > 1).
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid, time
def rid(): return uuid.uuid4().hex
A = 'tenants/t1/agents/a1'; G = 'tenants/t1/groups/g1'
def setup(n, routing, cap):
    n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
    n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=cap, groups=[G], request_id=rid()))
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
def post(n, u):
    return n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'tenants/t1/customers/{u}', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
def assigned(n):
    return len(n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=A)).conversations)
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        setup(n, routing, 3)
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=1, request_id=rid()))
        for u in ['u1', 'u2', 'u3']: post(n, u)
        time.sleep(0.5)
        ag = n.admin.GetAgent(admin_pb2.GetAgentRequest(name=A))
        print(rname, 'A: capacity', ag.capacity, 'load', ag.load, 'assigned', assigned(n))
        if ag.load > ag.capacity or assigned(n) > ag.capacity: fails.append((rname, 'A'))
    with Node() as n:
        setup(n, routing, 2)
        c1 = post(n, 'u1'); c2 = post(n, 'u2'); c3 = post(n, 'u3')
        try:
            n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=1, request_id=rid())); print(rname, 'B: lowering accepted')
        except grpc.RpcError as e:
            print(rname, 'B: lowering refused', e.code().name, e.details())
        n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=A, conversation=c1.name, request_id=rid()))
        time.sleep(0.5)
        ag = n.admin.GetAgent(admin_pb2.GetAgentRequest(name=A))
        c3s = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c3.name))
        print(rname, 'B: capacity', ag.capacity, 'load', ag.load, 'assigned', assigned(n), 'c3 state', common_pb2.ConversationState.Name(c3s.state))
        if ag.load > ag.capacity or assigned(n) > ag.capacity: fails.append((rname, 'B'))
print('FAIL' if fails else 'PASS', fails)

# Case C (ACTORS): after a refused-in-router lowering, the router keeps the old capacity for
# good, and a group change sent in the same PutAgent is lost too.
fails2 = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        setup(n, routing, 2)
        G2 = 'tenants/t1/groups/g2'
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G2, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        c1 = post(n, 'u1'); c2 = post(n, 'u2')
        try:
            n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=1, groups=[G, G2], request_id=rid()))
        except grpc.RpcError as e:
            print(rname, 'C: refused', e.code().name); continue
        for c in (c1, c2):
            n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=A, conversation=c.name, request_id=rid()))
        for u in ['u3', 'u4', 'u5']: post(n, u)
        x = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer='tenants/t1/customers/x1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G2, request_id=rid())).conversation
        time.sleep(0.5)
        ag = n.admin.GetAgent(admin_pb2.GetAgentRequest(name=A))
        print(rname, 'C: GetAgent capacity', ag.capacity, 'groups', list(ag.groups), 'load', ag.load, 'assigned', assigned(n))
        ul = [c.name for c in n.agent.ListUnaccepted(agent_pb2.ListAgentConversationsRequest(agent=A)).conversations]
        print(rname, 'C: g2 conversation in unaccepted list of a1:', x.name in ul)
        if assigned(n) > ag.capacity: fails2.append((rname, 'C'))
print('FAIL' if fails2 else 'PASS', fails2)
print('OVERALL', 'FAIL' if (fails or fails2) else 'PASS')
