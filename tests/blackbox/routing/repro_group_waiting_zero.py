# Repro: Group.waiting ("Live figures", admin.proto) must count the conversations queued in
# the group. ACTORS routing always reports 0.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import uuid
def rid(): return uuid.uuid4().hex
G = 'tenants/t1/groups/g1'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        for i in range(3):
            c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'tenants/t1/customers/u{i}', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
            assert c.state == common_pb2.CONVERSATION_STATE_QUEUED
        w = n.admin.GetGroup(admin_pb2.GetGroupRequest(name=G)).waiting
        lw = n.admin.ListGroups(admin_pb2.ListGroupsRequest(tenant='tenants/t1')).groups[0].waiting
        print(rname, 'GetGroup.waiting', w, 'ListGroups.waiting', lw, '(expected 3)')
        if w != 3 or lw != 3: fails.append(rname)
print('FAIL' if fails else 'PASS', fails)
