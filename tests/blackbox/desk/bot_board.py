# SPEC 8 live board 'conversations in progress'; ListConversations 'open and ended' with state = BOT filter.
# Live board / supervisor views with conversations in the BOT state (transfer_to_human on)
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(transfer_to_human=True)
    t = T(n, 'bb'+name.lower(), r, settings=st)
    t.agent('a1', status=0); t.agent('sup', sup=True, status=0)
    c1 = t.post('u1', 'hi bot').conversation.name
    c2 = t.post('u2', 'hi bot').conversation.name
    t.post('u2', 'more')
    n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c2, request_id=rid()))
    o = {}
    b = n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t))
    o['counts'] = (b.in_progress, b.ended, b.total)
    o['rows'] = sorted((x.conversation, S.ConversationState.Name(x.state), x.messages, x.customer_messages) for x in b.conversations)
    o['list'] = sorted((x.name, S.ConversationState.Name(x.state)) for x in n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t)).conversations)
    o['list_bot_filter'] = sorted(x.name for x in n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t, filter='state = BOT')).conversations)
    o['sup_search'] = sorted(x.name for x in n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('sup'))).conversations)
    o['whisper_bot'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c1, text='w', request_id=rid())))[0]
    o['hist_bot_sup'] = code(lambda: [m.text for m in t.hist('sup', c1)])
    o['upd_bot_sup'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('sup'), conversation=c1, tags=['bot'], request_id=rid())))[0]
    o['endbatch_bot'] = [(x.ok, x.error[:60]) for x in n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c1], request_id=rid())).results]
    o['c1_state'] = S.ConversationState.Name(t.conv(c1).state)
    b = n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t))
    o['counts_after'] = (b.in_progress, b.ended, b.total)
    n.restart(kill=True)
    b = n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t))
    o['counts_restart'] = (b.in_progress, b.ended, b.total)
    return o
def expect(o):
    f = []
    if o['counts'] != [2, 0, 2]: f.append(f"live board counts {o['counts']} (expected in_progress 2 incl. the BOT conversation)")
    if o['list_bot_filter'] != ['tenants/T/conversations/1']: f.append(f"ListConversations state = BOT -> {o['list_bot_filter']}")
    if len(o['sup_search']) != 2: f.append(f"supervisor SearchConversations misses BOT conversation {o['sup_search']}")
    return f
report(run_both(probe), expect)
