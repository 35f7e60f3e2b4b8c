"""FINDING (ACTORS only): a timer threshold shortened while the timer is pending (SPEC §5
"a timer is state, not a sleeping task") fires at the OLD deadline on TENANT_ROUTING_ACTORS;
TENANT_ACTOR fires at the new one. Here agent-no-response 10 s -> 1 s (UpdateTenant) right after
the customer wrote: TENANT_ACTOR sends the reply ~1 s after the message, ACTORS ~10 s after."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(agent_no_response=A.TimedReply(after=dur(10), texts=['ANR'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=2)
    resp = e.post('u1', 'hi'); c = resp.conversation.name
    t0 = time.time(); e.settle(0.3)
    n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(replies=A.ReplySettings(
        agent_no_response=A.TimedReply(after=dur(1), texts=['ANR']))), update_mask=field_mask_pb2.FieldMask(paths=['settings.replies'])))
    e.out.wait(lambda s: any(m.reply_kind == CH.REPLY_KIND_AGENT_NO_RESPONSE for m in s), 15)
    m = [m for m in e.out.snap() if m.reply_kind == CH.REPLY_KIND_AGENT_NO_RESPONSE]
    return round(time.time() - t0) if m else None
report('ANR fires ~1 s after the message once the threshold is 1 s', diff_run(run), 1)
