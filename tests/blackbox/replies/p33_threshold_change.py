"""Changing a threshold while a timer is pending: the new threshold applies (timers are state,
recomputed from the settings), alike on both routings."""
from rlib import *

def run(n, r, old, new):
    st = A.TenantSettings(replies=A.ReplySettings(agent_no_response=A.TimedReply(after=dur(old), texts=['ANR'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name; e.settle(0.3)
    n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(replies=A.ReplySettings(
        agent_no_response=A.TimedReply(after=dur(new), texts=['ANR']))), update_mask=field_mask_pb2.FieldMask(paths=['settings.replies'])))
    time.sleep(3.5)
    return e.outs(c)
report('shorten ANR 60s -> 1s while pending', diff_run(lambda n, r: run(n, r, 60, 1)), [('AGENT_NO_RESPONSE', 'ANR')])
report('lengthen ANR 2s -> 60s while pending', diff_run(lambda n, r: run(n, r, 2, 60)), [])

def idle(n, r):
    e = Env(n, 't1', r)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name; e.settle(0.3)
    n.admin.PutGroup(A.PutGroupRequest(name=e.g('g1'), replies=A.ReplySettings(idle_end=A.TimedReply(after=dur(1), texts=['IDLE'])),
                                       update_mask=field_mask_pb2.FieldMask(paths=['replies.idle_end'])))
    e.wait_state(c, CH.CONVERSATION_STATE_ENDED, 6); e.settle()
    return CH.ConversationState.Name(e.conv(c).state), e.outs(c)
report('idle end enabled on the group while conversation open', diff_run(idle), ('CONVERSATION_STATE_ENDED', [('IDLE_END', 'IDLE')]))
