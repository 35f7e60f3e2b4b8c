# SPEC §6 "Unaccepted list ... live"; agent.proto UnacceptedRemoved: "moved (now waits where this agent does not
# see it: another group ...)". Changing an agent's groups (PutAgent) changes ListUnaccepted but pushes no
# unaccepted_removed / unaccepted_added, so a desktop that applies the events keeps a stale list.
from common import *
FM = field_mask_pb2.FieldMask
def probe(n, name, r):
    t = T(n, 'ml'+name.lower(), r, groups=('g1', 'g2'), mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a2')
    s2 = agent_stream(n, t.a('a2'))
    c = t.post('u1').conversation.name
    o = {'added': bool(s2.wait(lambda e: kind(e) == 'unaccepted_added' and e.conversation == c))}
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a2'), groups=[t.g('g2')], update_mask=FM(paths=['groups']), request_id=rid()))
    o['list_after_leave'] = t.unacc('a2')
    o['removed_event'] = [e.unaccepted_removed.reason for e in s2.wait(lambda e: kind(e) == 'unaccepted_removed' and e.conversation == c, 5)]
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a2'), groups=[t.g('g1')], update_mask=FM(paths=['groups']), request_id=rid()))
    o['list_after_join'] = t.unacc('a2')
    o['added_events'] = len(s2.wait(lambda e: kind(e) == 'unaccepted_added' and e.conversation == c, 5, 2))
    s2.cancel()
    return o
def expect(o):
    f = []
    if o['list_after_leave'] == [] and not o['removed_event']: f.append('left group: ListUnaccepted dropped the conversation but no unaccepted_removed pushed')
    if o['list_after_join'] and o['added_events'] < 2: f.append('joined group: ListUnaccepted has the conversation but no unaccepted_added pushed')
    return f
report(run_both(probe), expect)
