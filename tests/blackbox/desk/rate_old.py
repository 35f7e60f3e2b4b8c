# Rating / tags / note of an ENDED conversation while the same customer has a NEW open conversation
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(rating_credit=admin_pb2.RATING_CREDIT_LAST_ONLY)
    t = T(n, 'ro'+name.lower(), r, settings=st)
    t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY)
    ev = tenant_stream(n, t.t)
    c1 = t.post('u1', 'first').conversation.name
    t.send('a1', c1, 'r1')
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c1, to_agent=t.a('a2'), request_id=rid()))
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c1, request_id=rid()))
    c2 = t.post('u1', 'second').conversation.name
    o = {'distinct': c1 != c2}
    rc = n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c1, score=2, comment='meh', request_id=rid()))
    o['rate_resp'] = (rc.name == c1, rc.rating.score, rc.rating.comment, list(rc.rating.credited_agents), S.ConversationState.Name(rc.state))
    u = n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c1, tags=['old'], note='old note', request_id=rid()))
    o['upd_resp'] = (u.name == c1, list(u.tags), u.note)
    g1, g2 = t.conv(c1), t.conv(c2)
    o['c1'] = (g1.rating.score, g1.rating.comment, list(g1.tags), g1.note, S.ConversationState.Name(g1.state))
    o['c2'] = (g2.rating.score, list(g2.tags), g2.note, S.ConversationState.Name(g2.state))
    ra = ev.wait(lambda e: e.type == 'rated')
    o['rated_event'] = (ra[0].conversation == c1, ra[0].rated.score, list(ra[0].rated.credited_agents)) if ra else None
    # rate the open one too
    n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c2, score=5, request_id=rid()))
    o['c1_after_c2_rated'] = t.conv(c1).rating.score
    lc = {x.name: (x.rating.score, list(x.tags)) for x in n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t)).conversations}
    o['list'] = (lc.get(c1), lc.get(c2))
    n.restart(kill=True)
    g1, g2 = t.conv(c1), t.conv(c2)
    o['r_c1'] = (g1.rating.score, g1.rating.comment, list(g1.tags), g1.note)
    o['r_c2'] = (g2.rating.score, list(g2.tags), g2.note)
    ev.cancel()
    return o
def expect(o):
    f = []
    if o['c1'][:4] != [2, 'meh', ['old'], 'old note']: f.append(f"c1 {o['c1']}")
    if o['c2'][:3] != [0, [], '']: f.append(f"c2 polluted {o['c2']}")
    if o['rate_resp'][3] != ['tenants/T/agents/a2']: f.append(f"last-only credit {o['rate_resp'][3]}")
    return f
report(run_both(probe), expect)
