# Repro: a conversation waiting for the customer's dedicated agent (a2, online but full) keeps
# waiting for a2 after the administrator clears or changes the customer's dedicated agent,
# while another online agent of the group (a3) has free capacity. SPEC §3: "A customer with a
# dedicated agent is routed to that agent only" + "Work conservation: while a conversation
# waits in a group, no agent of that group who could take it (online, under capacity) stays idle".
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import uuid, time
from google.protobuf import duration_pb2, field_mask_pb2
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/g1'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    for change in ['clear', 'to_a3']:
        with Node() as n:
            n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
            n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, dedicated_timeout=duration_pb2.Duration(seconds=600)), request_id=rid()))
            for a in ['a2', 'a3']:
                n.admin.PutAgent(admin_pb2.PutAgentRequest(name=f'{T}/agents/{a}', capacity=1, groups=[G], request_id=rid()))
            n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=f'{T}/agents/a2', status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
            busy = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/x', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
            assert busy.agent == f'{T}/agents/a2'
            n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=f'{T}/customers/d1', dedicated_agent=f'{T}/agents/a2', request_id=rid()))
            d = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/d1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
            assert d.state == common_pb2.CONVERSATION_STATE_QUEUED
            if change == 'clear':
                n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=f'{T}/customers/d1', dedicated_agent='', update_mask=field_mask_pb2.FieldMask(paths=['dedicated_agent']), request_id=rid()))
            else:
                n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=f'{T}/customers/d1', dedicated_agent=f'{T}/agents/a3', request_id=rid()))
            print(rname, change, 'customer dedicated now:', repr(n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=f'{T}/customers/d1')).dedicated_agent))
            n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=f'{T}/agents/a3', status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
            time.sleep(1)
            c = n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=d.name))
            ex = n.sup.ExplainConversation(explain_pb2.ExplainConversationRequest(conversation=d.name))
            print(rname, change, 'd1 state', common_pb2.ConversationState.Name(c.state), 'agent', c.agent, 'pinned_agent', ex.waiting.pinned_agent if ex.WhichOneof('explanation') == 'waiting' else '-')
            if c.state != common_pb2.CONVERSATION_STATE_ASSIGNED: fails.append((rname, change))
print('FAIL' if fails else 'PASS', fails)
