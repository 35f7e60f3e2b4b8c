# Repro: SPEC §3 work conservation: "While a conversation waits in a group, no agent of that
# group who could take it (online, under capacity) stays idle." After the group's only agent
# lets an offer time out (or declines, or transfers the conversation to a group it is itself
# in), the conversation waits indefinitely while that agent is online with free capacity (even
# after the agent toggles busy -> online). explain.proto documents WAIT_REASON_DECLINED, so this
# is a deliberate rule, but it contradicts the spec's definition of "could take it".
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import uuid, time
from google.protobuf import duration_pb2
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/g1'; A = T + '/agents/a1'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=duration_pb2.Duration(seconds=1)), request_id=rid()))
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=3, groups=[G], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
        assert c.state == common_pb2.CONVERSATION_STATE_OFFERED
        time.sleep(2)  # offer times out
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_BUSY, request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        time.sleep(3)
        cc = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c.name))
        ag = n.admin.GetAgent(admin_pb2.GetAgentRequest(name=A))
        ex = n.sup.ExplainConversation(explain_pb2.ExplainConversationRequest(conversation=c.name))
        reasons = [explain_pb2.WaitReason.Name(v.verdict.reason) for v in ex.waiting.agents] if ex.WhichOneof('explanation') == 'waiting' else []
        print(rname, 'conversation', common_pb2.ConversationState.Name(cc.state), '| agent', common_pb2.AgentStatus.Name(ag.status), 'load', ag.load, 'cap', ag.capacity, '| explain', reasons)
        if cc.state == common_pb2.CONVERSATION_STATE_QUEUED and ag.status == common_pb2.AGENT_STATUS_ONLINE and ag.load < ag.capacity: fails.append(rname)
print('FAIL' if fails else 'PASS', fails)
