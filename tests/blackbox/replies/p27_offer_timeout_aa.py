"""Auto-accept reply after an offer timed out / was declined (the conversation went back to the
queue): not sent unless also_from_queue; both routings alike."""
from rlib import *

def probe(also, how):
    def run(n, r):
        st = A.TenantSettings(not_responding_after=0, replies=A.ReplySettings(
            auto_accept=A.AutoAcceptReply(texts=['AA {{staff_name}}'], also_from_queue=also)))
        pol = A.RoutingPolicy(offer_mode=A.OFFER_MODE_OFFER, offer_timeout=dur(1))
        e = Env(n, 't1', r, st, policy=pol)
        e.agent('a1', cap=1, nick='Ann'); e.agent('a2', cap=1, nick='Bea', online=False)
        c = e.post('u1', 'hi').conversation.name; e.settle(0.3)
        if how == 'decline':
            n.agent.Decline(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c))
        else:
            time.sleep(1.6)
        e.settle(0.3); e.status('a2', CH.AGENT_STATUS_ONLINE)
        ok = e.wait_state(c, CH.CONVERSATION_STATE_OFFERED, 5)
        e.settle(0.3)
        try: n.agent.Accept(AG.AgentConversationRequest(agent=e.a('a2'), conversation=c)); acc = 'ok'
        except grpc.RpcError as x: acc = x.code().name
        e.settle()
        return acc, CH.ConversationState.Name(e.conv(c).state), e.outs(c), [x[0] for x in e.evs(c)]
    return run
for how in ('decline', 'timeout'):
    for also in (False, True):
        report(f'AA after {how}, also_from_queue={also}', diff_run(probe(also, how)))
