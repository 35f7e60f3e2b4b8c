# Repro (low): Transfer/ReassignBatch naming an unknown target. Tenant actor's error names the
# field to fix ("to_agent: ...", "to_group: ..."); ACTORS names "agent:" / "group:", i.e. the
# acting-agent field, which misleads the caller.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/g1'; A = T + '/agents/a1'
out = {}
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT), request_id=rid()))
        n.admin.PutAgent(admin_pb2.PutAgentRequest(name=A, capacity=2, groups=[G], request_id=rid()))
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=A, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u1', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
        res = []
        for kw in [dict(to_agent=T + '/agents/zz'), dict(to_group=T + '/groups/zz')]:
            try:
                n.agent.Transfer(agent_pb2.TransferRequest(agent=A, conversation=c.name, request_id=rid(), **kw)); res.append('OK')
            except grpc.RpcError as e:
                res.append(e.details()); print(rname, e.code().name, e.details())
        out[rname] = res
ok = all(r.startswith(('to_agent:', 'to_group:')) for r in out['ACTORS'])
print('PASS' if ok else 'FAIL')
