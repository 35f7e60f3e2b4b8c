# SPEC §6 notification for offer mode, decline; pinned (dedicated) unaccepted entries; unreplied alert to group when unassigned
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(unreplied_alert=dur(1))
    pol = admin_pb2.RoutingPolicy(offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(30))
    t = T(n, 'of'+name.lower(), r, settings=st, policy=pol)
    t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('d', status=S.AGENT_STATUS_BUSY)
    s1 = agent_stream(n, t.a('a1')); s2 = agent_stream(n, t.a('a2')); sd = agent_stream(n, t.a('d'))
    ev = tenant_stream(n, t.t)
    o = {}
    c = t.post('u1').conversation.name
    of = s1.wait(lambda e: kind(e)=='offered' and e.conversation==c)
    o['offered'] = bool(of) and of[0].offered.HasField('expires')
    o['state'] = S.ConversationState.Name(t.conv(c).state)
    o['a2_unacc_removed'] = [e.unaccepted_removed.reason for e in s2.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c, 3)]
    o['a2_unacc_list'] = t.unacc('a2')
    o['a1_unacc_list'] = t.unacc('a1')
    n.agent.Decline(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    rel = s1.wait(lambda e: kind(e)=='released' and e.conversation==c)
    o['released'] = rel[0].released.reason if rel else None
    o['state_after_decline'] = S.ConversationState.Name(t.conv(c).state)
    o['a2_readded'] = bool(s2.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 5, 2))
    om = ev.wait(lambda e: e.type=='offer_missed')
    o['offer_missed'] = (om[0].offer_missed.agent, om[0].offer_missed.reason) if om else None
    # unassigned alert: all members of the group (not a1? a1 declined)
    al = ev.wait(lambda e: e.type=='unreplied_alert' and e.conversation==c, 15)
    o['alert_notify'] = sorted(al[0].unreplied_alert.notify) if al else None
    time.sleep(0.5)
    o['alert_on_streams'] = [bool([e for e in s.items if kind(e)=='unreplied_alert' and e.conversation==c]) for s in (s1, s2, sd)]
    # dedicated agent pinned entries
    n.admin.PutCustomer(admin_pb2.PutCustomerRequest(name=t.c('u2'), dedicated_agent=t.a('d'), request_id=rid()))
    c2 = t.post('u2').conversation.name
    pin = sd.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c2)
    o['pinned_d'] = pin[0].unaccepted_added.pinned if pin else None
    o['pinned_a2'] = [e.unaccepted_added.pinned for e in s2.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c2, 2)]
    o['d_list'] = c2 in t.unacc('d'); o['a2_list_has_c2'] = c2 in t.unacc('a2')
    for s in (s1, s2, sd, ev): s.cancel()
    return o
report(run_both(probe))
