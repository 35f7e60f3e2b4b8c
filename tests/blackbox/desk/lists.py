# SPEC §6: unaccepted/accepted lists live; new-conversation notification; AgentEvent.UnacceptedAdded comment
from common import *
def probe(n, name, r):
    t = T(n, 'ls'+name.lower(), r, mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a1'); t.agent('a2'); t.agent('a3', status=S.AGENT_STATUS_BUSY); t.agent('off', status=0)
    s1 = agent_stream(n, t.a('a1')); s2 = agent_stream(n, t.a('a2')); s3 = agent_stream(n, t.a('a3')); so = agent_stream(n, t.a('off'))
    time.sleep(0.3)
    c = t.post('u1').conversation.name
    o = {}
    o['a1_added'] = bool(s1.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c))
    o['a2_added'] = bool(s2.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c))
    o['busy_added'] = bool(s3.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c))
    o['offline_added'] = bool(so.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 1))
    ad = s1.wait(lambda e: kind(e)=='unaccepted_added')
    o['added_group'] = ad[0].unaccepted_added.group if ad else None
    o['list_a1'] = t.unacc('a1') == [c]
    o['list_a2'] = t.unacc('a2') == [c]
    o['list_a3busy'] = t.unacc('a3') == [c]
    cv = n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o['pick_state'] = S.ConversationState.Name(cv.state)
    rm = s2.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c)
    o['a2_removed'] = rm[0].unaccepted_removed.reason if rm else None
    rm1 = s1.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c)
    o['a1_removed'] = rm1[0].unaccepted_removed.reason if rm1 else None
    asg = s1.wait(lambda e: kind(e)=='assigned' and e.conversation==c)
    o['a1_assigned_via'] = asg[0].assigned.via if asg else None
    o['a1_unacc_after'] = t.unacc('a1'); o['a2_unacc_after'] = t.unacc('a2')
    o['a1_assigned_list'] = t.assigned('a1') == [c]
    o['a2_assigned_list'] = t.assigned('a2')
    # second pick by a2 -> FAILED_PRECONDITION?
    o['pick_taken'] = code(lambda: n.agent.Pick(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid())))[0]
    # customer message shows on assigned agent stream
    t.post('u1', 'second')
    o['cm'] = bool(s1.wait(lambda e: kind(e)=='customer_message' and e.customer_message.text=='second'))
    o['cm_a2'] = bool(s2.wait(lambda e: kind(e)=='customer_message', 1))
    # transfer to group -> back to unaccepted lists
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_group=t.g('g1'), request_id=rid()))
    rel = s1.wait(lambda e: kind(e)=='released' and e.conversation==c)
    o['a1_released'] = rel[0].released.reason if rel else None
    o['a2_readded'] = len(s2.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 5, 2))
    o['a1_readded'] = len(s1.wait(lambda e: kind(e)=='unaccepted_added' and e.conversation==c, 5, 2))
    o['a1_assigned_after_tr'] = t.assigned('a1')
    o['unacc_a2_after_tr'] = t.unacc('a2') == [c]
    # end from queue via supervisor -> removed 'ended'
    t.agent('sup', sup=True, status=0)
    n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=c, request_id=rid()))
    rm = s2.wait(lambda e: kind(e)=='unaccepted_removed' and e.conversation==c and e.unaccepted_removed.reason=='ended')
    o['a2_removed_ended'] = bool(rm)
    o['unacc_after_end'] = t.unacc('a2')
    # agent going offline then online: list call
    for s in (s1, s2, s3, so): s.cancel()
    return o
def expect(o):
    f = []
    if not o.get('a1_added') or not o.get('a2_added'): f.append('online members not notified of new conversation')
    if not o.get('busy_added'): f.append('busy member not sent unaccepted_added (proto: every member not offline)')
    if o.get('offline_added'): f.append('offline member got unaccepted_added')
    if o.get('a2_removed') != 'assigned': f.append(f"a2 removed reason {o.get('a2_removed')}")
    if o.get('pick_taken') not in ('FAILED_PRECONDITION',): f.append(f"pick of taken conv: {o.get('pick_taken')}")
    if o.get('cm_a2'): f.append('customer message leaked to other agent')
    if not o.get('a2_readded') or o.get('a2_readded') < 2: f.append('transfer-to-group did not re-add to unaccepted list')
    if not o.get('a2_removed_ended'): f.append('no removed(ended) on end from queue')
    return f
report(run_both(probe), expect)
