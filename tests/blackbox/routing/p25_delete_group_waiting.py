# DeleteGroup of a group with no members but waiting conversations; and of a group a customer/channel names.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('g2', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    c = t.post('u1'); o.lab(c.name, 'c1')
    o('waiting', n.admin.GetGroup(admin_pb2.GetGroupRequest(name=t.g('g1'))).waiting)
    o('delete g1 with 1 waiting, no members', err(lambda: n.admin.DeleteGroup(admin_pb2.DeleteGroupRequest(name=t.g('g1'), request_id=rid()))))
    o('conv', err(lambda: o.c(t.conv(c.name))) or o.c(t.conv(c.name)))
    o('get group', err(lambda: n.admin.GetGroup(admin_pb2.GetGroupRequest(name=t.g('g1')))))
    t.agent('a1', ['g1'], cap=1)
    o('put agent in deleted group', err(lambda: t.agent('a1', ['g1'], cap=1)))
    o('recreate g1', err(lambda: t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)))
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    o('conv after recreate+agent', o.c(t.conv(c.name)))
    # explain
    e = err(lambda: n.sup.ExplainConversation(explain_pb2.ExplainConversationRequest(conversation=c.name)))
    o('explain', e)
    # transfer
compare(probe)
