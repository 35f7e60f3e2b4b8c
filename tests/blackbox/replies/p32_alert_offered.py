"""SPEC §5 unreplied alert: "notify the assigned agent, or all members of the group when the
conversation is unassigned". An OFFERED conversation is not assigned (SPEC §2 states)."""
from rlib import *

def run(n, r):
    pol = A.RoutingPolicy(offer_mode=A.OFFER_MODE_OFFER, offer_timeout=dur(60))
    e = Env(n, 't1', r, A.TenantSettings(unreplied_alert=dur(1.5)), policy=pol)
    e.agent('a1', cap=1); e.agent('a2', cap=1, online=False)
    c = e.post('u1', 'hi').conversation.name
    time.sleep(3)
    return CH.ConversationState.Name(e.conv(c).state), [x for x in e.evs(c) if x[0] == 'unreplied_alert']
report('alert while offered goes to all group members [ambiguous]', diff_run(run),
       ('CONVERSATION_STATE_OFFERED', [('unreplied_alert', 'a1,a2')]))
