# References to deleted groups/agents read as empty (common.proto): ended conversation's group/agent/served_by, customer group/dedicated/last_agent.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g3', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g3'], cap=1, status=S.AGENT_STATUS_ONLINE)
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('u1'), group=t.g('g3'), dedicated_agent=t.a('a1'), request_id=rid()))
    c = t.post('u1', group=None) if False else n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='hi', request_id=rid())).conversation
    o.lab(c.name, 'c1'); o('open', o.c(c))
    t.end('a1', c.name)
    n.admin.DeleteAgent(admin_pb2.DeleteAgentRequest(name=t.a('a1'), request_id=rid()))
    o('delete g3', err(lambda: n.admin.DeleteGroup(admin_pb2.DeleteGroupRequest(name=t.g('g3'), request_id=rid()))))
    cc = t.conv(c.name)
    o('ended conv group', repr(cc.group), 'served_by', list(cc.served_by), 'transitions agents', [x.agent for x in cc.transitions])
    cu = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1')))
    o('customer group', repr(cu.group), 'dedicated', repr(cu.dedicated_agent), 'last', repr(cu.last_agent))
    o('post again (customer group deleted)', err(lambda: n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='hi', request_id=rid()))))
compare(probe)
