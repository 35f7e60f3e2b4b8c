"""FINDING (low): reassigning an assigned conversation to a group in OFFER mode: the tenant
event stream reports `transferred` then `offered` on TENANT_ACTOR but `offered` before
`transferred` on ACTORS (an offer of a conversation not yet transferred)."""
from rlib import *

def run(n, r):
    pol = A.RoutingPolicy(offer_mode=A.OFFER_MODE_OFFER, offer_timeout=dur(30))
    e = Env(n, 't1', r, policy=pol, groups=('g1', 'g2'))
    e.agent('b1', groups=('g2',), cap=3); e.agent('a1', cap=3, online=False); e.agent('s1', sup=True, online=False)
    c = e.post('u1', 'hi', group=e.g('g2')).conversation.name; e.settle()
    n.agent.Accept(AG.AgentConversationRequest(agent=e.a('b1'), conversation=c)); e.settle()
    e.status('a1', CH.AGENT_STATUS_ONLINE); e.settle()
    n.sup.ReassignBatch(S.ReassignBatchRequest(supervisor=e.a('s1'), conversations=[c], to_group=e.g('g1'))); e.settle()
    return [x[0] for x in e.evs(c)]
report('event order on reassign to group (offer mode)', diff_run(run),
       ['opened', 'offered', 'assigned', 'transferred', 'offered'])
