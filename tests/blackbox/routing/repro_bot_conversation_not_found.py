# Repro: routing calls on a conversation in state BOT (it exists: GetConversation returns it).
# Pick/Accept/Decline answer NOT_FOUND "does not exist"/"not found" on both routings; a
# conversation that exists but is in the wrong state should be FAILED_PRECONDITION (as the same
# calls answer for a QUEUED conversation not offered to the agent).
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/g1'; A = T + '/agents/a1'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, settings=admin_pb2.TenantSettings(transfer_to_human=True), request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_PULL), request_id=rid()))
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=2, groups=[G], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
        assert n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c.name)).state == common_pb2.CONVERSATION_STATE_BOT
        for op in ['Pick', 'Accept', 'Decline', 'EndConversation', 'Transfer']:
            try:
                if op == 'Transfer':
                    n.agent.Transfer(agent_pb2.TransferRequest(agent=A, conversation=c.name, to_group=G, request_id=rid()))
                else:
                    getattr(n.agent, op)(agent_pb2.AgentConversationRequest(agent=A, conversation=c.name, request_id=rid()))
                code, msg = 'OK', ''
            except grpc.RpcError as e:
                code, msg = e.code().name, e.details()
            print(rname, op, code, msg)
            if code == 'NOT_FOUND': fails.append((rname, op))
print('FAIL' if fails else 'PASS', fails)
