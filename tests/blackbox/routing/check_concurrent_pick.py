# Check (held): two agents Pick the same queued conversation at the same moment (pull mode). Exactly
# one must win; the loser should get FAILED_PRECONDITION (the conversation exists, it is just
# no longer in the unaccepted list), as the tenant-actor routing answers. ACTORS routing
# sometimes answers NOT_FOUND "conversation ... not found" for an existing conversation.
import os, sys; sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))); from node import *
import grpc, uuid, threading, collections
def rid(): return uuid.uuid4().hex
T = 'tenants/t1'; G = T + '/groups/gp'
fails = []
for rname, routing in [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR), ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]:
    with Node() as n:
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id='t1', routing=routing, request_id=rid()))
        n.admin.PutGroup(admin_pb2.PutGroupRequest(name=G, policy=admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_PULL), request_id=rid()))
        agents = [f'{T}/agents/a{i}' for i in range(4)]
        for a in agents:
            n.admin.PutAgent(admin_pb2.PutAgentRequest(name=a, capacity=1000, groups=[G], request_id=rid()))
            n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=a, status=common_pb2.AGENT_STATUS_ONLINE, request_id=rid()))
        codes = collections.Counter(); wins = collections.Counter(); msgs = set()
        for i in range(150):
            c = n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=f'{T}/customers/u{i}', channel=common_pb2.CHANNEL_WEB, text='hi', group=G, request_id=rid())).conversation
            barrier = threading.Barrier(len(agents)); res = []
            def go(a):
                barrier.wait()
                try:
                    n.agent.Pick(agent_pb2.AgentConversationRequest(agent=a, conversation=c.name, request_id=rid())); res.append('OK')
                except grpc.RpcError as e:
                    res.append(e.code().name); msgs.add(e.code().name + ': ' + e.details().replace(c.name, '<conv>'))
            ths = [threading.Thread(target=go, args=(a,)) for a in agents]
            for th in ths: th.start()
            for th in ths: th.join()
            codes.update(res); wins[res.count('OK')] += 1
        print(rname, 'result codes', dict(codes), 'winners per conversation', dict(wins))
        for m in sorted(msgs): print('   ', m)
        if set(codes) - {'OK', 'FAILED_PRECONDITION'} or set(wins) != {1}: fails.append(rname)
print('FAIL' if fails else 'PASS', fails)
