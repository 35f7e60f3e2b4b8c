# SPEC §6 rating invitation + score/comment; §8 rating shared by every agent who served vs only last; §9 rated event
from common import *
def probe(n, name, r, credit=None):
    o = {}
    for cr in (None, admin_pb2.RATING_CREDIT_ALL_SERVED, admin_pb2.RATING_CREDIT_LAST_ONLY):
        st = admin_pb2.TenantSettings(rating_credit=cr) if cr else None
        tag = {None:'d', 1:'all', 2:'last'}[cr]
        t = T(n, 'rt'+tag+name.lower(), r, settings=st)
        t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('a3', status=S.AGENT_STATUS_BUSY)
        ev = tenant_stream(n, t.t)
        out = Stream(n.chan.StreamOutbound(channel_pb2.StreamOutboundRequest(tenant=t.t)))
        c = t.post('u1').conversation.name
        t.send('a1', c, 'r1')
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
        n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_agent=t.a('a2'), request_id=rid()))
        # a3 only gets it transferred but never sends? Transfer a2->a3 without a2 sending
        n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a3'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
        n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a2'), conversation=c, to_agent=t.a('a3'), request_id=rid()))
        cv = n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=t.a('a3'), conversation=c, request_id=rid()))
        inv = out.wait(lambda m: m.reply_kind == S.REPLY_KIND_RATING_INVITATION)
        o[tag+'_invite_outbound'] = (inv[0].agent, inv[0].reply_kind) if inv else None
        o[tag+'_invite_hist'] = [m.reply_kind for m in t.hist('a3', c) if m.reply_kind == S.REPLY_KIND_RATING_INVITATION]
        o[tag+'_invite_other'] = code(lambda: n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid())))[0]
        o[tag+'_rate0'] = code(lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=0, request_id=rid())))[0]
        o[tag+'_rate6'] = code(lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=6, request_id=rid())))[0]
        rc = n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=4, comment='good', request_id=rid()))
        o[tag+'_rating'] = (rc.rating.score, rc.rating.comment, sorted(rc.rating.credited_agents))
        o[tag+'_served_by'] = sorted(rc.served_by)
        ra = ev.wait(lambda e: e.type == 'rated')
        o[tag+'_rated_event'] = (ra[0].rated.score, sorted(ra[0].rated.credited_agents), ra[0].conversation == c) if ra else None
        o[tag+'_rate_again'] = code(lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=2, request_id=rid())))
        o[tag+'_rating_after_again'] = t.conv(c).rating.score
        n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a3'), conversation=c, request_id=rid()))
        o[tag+'_ended_rating'] = (t.conv(c).rating.score, t.conv(c).rating.comment, sorted(t.conv(c).rating.credited_agents))
        # rating after end (common: customer rates after session end)
        c2 = t.post('u2').conversation.name
        ag = t.conv(c2).agent.split('/')[-1]
        t.send(ag, c2, 'x')
        n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a(ag), conversation=c2, request_id=rid()))
        o[tag+'_invite_ended'] = code(lambda: n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=t.a(ag), conversation=c2, request_id=rid())))[0]
        o[tag+'_rate_ended'] = code(lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c2, score=5, comment='late', request_id=rid())))
        o[tag+'_rate_ended_get'] = (t.conv(c2).rating.score, t.conv(c2).rating.comment, len(t.conv(c2).rating.credited_agents))
        # queued conversation never served: rate?
        ev.cancel(); out.cancel()
    return o
def expect(o):
    f = []
    if o.get('d_rating', [0,0,[]])[2] != ['tenants/T/agents/a1','tenants/T/agents/a2','tenants/T/agents/a3']: f.append(f"default credit not all served: {o.get('d_rating')}")
    if o.get('last_rating', [0,0,[]])[2] != ['tenants/T/agents/a3']: f.append(f"last-only credit wrong: {o.get('last_rating')}")
    if o.get('d_rate0') != 'INVALID_ARGUMENT' or o.get('d_rate6') != 'INVALID_ARGUMENT': f.append('score range not enforced')
    return f
report(run_both(probe), expect)
