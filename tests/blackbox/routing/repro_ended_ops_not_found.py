# Repro: acting on an ENDED conversation. Tenant-actor routing answers FAILED_PRECONDITION
# ("is ended"), ACTORS routing answers NOT_FOUND ("does not exist") although GetConversation
# returns the conversation. Expected FAILED_PRECONDITION on both.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid
def rid(): return uuid.uuid4().hex
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name='tenants/t1/groups/g1', policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name='tenants/t1/agents/a1', capacity=2, groups=['tenants/t1/groups/g1'], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent='tenants/t1/agents/a1', status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer='tenants/t1/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', group='tenants/t1/groups/g1', request_id=rid())).conversation
        assert c.state == common_pb2.CONVERSATION_STATE_ASSIGNED
        n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent='tenants/t1/agents/a1', conversation=c.name, request_id=rid()))
        assert n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c.name)).state == common_pb2.CONVERSATION_STATE_ENDED
        ops = {
            'EndConversation': lambda: n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent='tenants/t1/agents/a1', conversation=c.name, request_id=rid())),
            'SendMessage': lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent='tenants/t1/agents/a1', conversation=c.name, text='x', request_id=rid())),
            'CloseConversation': lambda: n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=c.name, request_id=rid())),
            'Transfer': lambda: n.agent.Transfer(agent_pb2.TransferRequest(agent='tenants/t1/agents/a1', conversation=c.name, to_group='tenants/t1/groups/g1', request_id=rid())),
            'Pick': lambda: n.agent.Pick(agent_pb2.AgentConversationRequest(agent='tenants/t1/agents/a1', conversation=c.name, request_id=rid())),
            'Accept': lambda: n.agent.Accept(agent_pb2.AgentConversationRequest(agent='tenants/t1/agents/a1', conversation=c.name, request_id=rid())),
        }
        for op, f in ops.items():
            try:
                f(); code, msg = 'OK', ''
            except grpc.RpcError as e:
                code, msg = e.code().name, e.details()
            print(rname, op, code, msg)
            if code != 'FAILED_PRECONDITION': fails.append((rname, op, code))
print('FAIL' if fails else 'PASS', fails)
