"""Offline condition (SPEC §4.5 "queued for a group whose agents are all offline") when the
group's membership changes rather than an agent's status: agent moved out of the group or deleted."""
from rlib import *

def run(n, r, how):
    st = A.TenantSettings(replies=A.ReplySettings(offline=A.OfflineReply(texts=['OFF']),
        queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q{{queue_num}}'])])))
    e = Env(n, 't1', r, st, groups=('g1', 'g2'))
    e.agent('a1', groups=('g1',), cap=1)
    e.agent('b1', groups=('g2',), cap=1)   # keeps the tenant not-all-offline
    c0 = e.post('u0', 'x', group=e.g('g1')).conversation.name
    c = e.post('u1', 'm0', group=e.g('g1')).conversation.name; e.settle()
    if how == 'move':
        n.admin.PutAgent(A.PutAgentRequest(name=e.a('a1'), groups=[e.g('g2')], update_mask=field_mask_pb2.FieldMask(paths=['groups'])))
    elif how == 'delete':
        n.admin.DeleteAgent(A.DeleteAgentRequest(name=e.a('a1')))
    elif how == 'add_back':
        pass
    time.sleep(1.5)
    e.post('u1', 'm1'); e.settle(1.0)
    e.post('u1', 'm2'); e.settle(1.0)
    return CH.ConversationState.Name(e.conv(c).state), e.outs(c)

for how in ('move', 'delete'):
    report(f'offline condition after agent {how}', diff_run(lambda n, r: run(n, r, how)),
           ('CONVERSATION_STATE_QUEUED', [('QUEUE', 'Q1'), ('OFFLINE', 'OFF'), ('OFFLINE', 'OFF')]))
