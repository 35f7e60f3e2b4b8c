"""SPEC §4.1 auto-accept reply over every way a conversation becomes assigned: offer+accept,
pull+pick, direct transfer, transfer to group, supervisor reassign; with/without also_from_queue."""
from rlib import *

def probe(mode, also):
    def run(n, r):
        st = A.TenantSettings(replies=A.ReplySettings(
            auto_accept=A.AutoAcceptReply(texts=['AA {{staff_name}}'], also_from_queue=also)))
        pol = A.RoutingPolicy(offer_mode=mode, offer_timeout=dur(30))
        e = Env(n, 't1', r, st, policy=pol, groups=('g1', 'g2'))
        e.agent('a1', cap=3, nick='Ann'); e.agent('b1', groups=('g2',), cap=3, nick='Bob')
        e.agent('s1', sup=True, online=False)
        c = e.post('u1', 'hi').conversation.name; e.settle()
        s = e.conv(c)
        steps = [CH.ConversationState.Name(s.state)]
        if s.state == CH.CONVERSATION_STATE_OFFERED:
            n.agent.Accept(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c))
        elif s.state == CH.CONVERSATION_STATE_QUEUED:
            n.agent.Pick(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c))
        e.settle(); steps.append(e.outs(c))
        n.agent.Transfer(AG.TransferRequest(agent=e.a('a1'), conversation=c, to_agent=e.a('b1'))); e.settle()
        steps.append(e.outs(c)[len(steps[-1]):])
        before = len(e.outs(c))
        n.sup.ReassignBatch(S.ReassignBatchRequest(supervisor=e.a('s1'), conversations=[c], to_group=e.g('g1'))); e.settle()
        s = e.conv(c)
        if s.state == CH.CONVERSATION_STATE_OFFERED:
            n.agent.Accept(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c))
        elif s.state == CH.CONVERSATION_STATE_QUEUED:
            n.agent.Pick(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c))
        e.settle()
        steps.append(e.outs(c)[before:])
        steps.append([x for x in e.evs(c) if x[0] in ('assigned', 'queued', 'offered', 'transferred')])
        return steps
    return run

for mode in ('OFFER_MODE_AUTO_ACCEPT', 'OFFER_MODE_OFFER', 'OFFER_MODE_PULL'):
    for also in (False, True):
        report(f'{mode} also_from_queue={also}', diff_run(probe(A.OfferMode.Value(mode), also)))
