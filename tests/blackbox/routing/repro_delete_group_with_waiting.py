# Repro: DeleteGroup of a skill group that has waiting conversations (and no members).
# Tenant actor: FAILED_PRECONDITION "still has members or waiting conversations; move them first".
# ACTORS: deletion accepted; the waiting conversation is stranded: Conversation.group reads a bare
# internal number ("1") instead of a resource name or empty (common.proto naming rule), and after
# re-creating the group and putting an online agent in it, the conversation is never assigned.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid, time
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/g1'; A = T + '/agents/a1'
def e(f):
    try: return f()
    except grpc.RpcError as x: return f'{x.code().name}: {x.details()}'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        pg = lambda: n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        pg()
        c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
        d = e(lambda: n.admin.DeleteGroup(admin_pb2.DeleteGroupRequest(name=G, request_id=rid())))
        print(rname, 'DeleteGroup with 1 waiting ->', 'OK' if not isinstance(d, str) else d)
        cc = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c.name))
        print(rname, 'conversation state', common_pb2.ConversationState.Name(cc.state), 'group field', repr(cc.group))
        if not isinstance(d, str):
            fails.append((rname, 'delete accepted'))
            if cc.group not in ('', G): fails.append((rname, 'group field not a resource name'))
            pg()  # re-create the group
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=1, groups=[G], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        time.sleep(1)
        cc = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c.name))
        print(rname, 'after group+online agent: state', common_pb2.ConversationState.Name(cc.state), 'group', repr(cc.group), 'agent', repr(cc.agent))
        if cc.state != common_pb2.CONVERSATION_STATE_ASSIGNED: fails.append((rname, 'stranded'))
print('FAIL' if fails else 'PASS', fails)
