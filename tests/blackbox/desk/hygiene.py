# API hygiene: bad input -> INVALID_ARGUMENT/NOT_FOUND/FAILED_PRECONDITION/..., never INTERNAL/UNKNOWN; TA vs AC same codes
from common import *
FM = field_mask_pb2.FieldMask
A = agent_pb2; SP = supervisor_pb2
def probe(n, name, r):
    t = T(n, 'hy'+name.lower(), r, mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=2); t.agent('a2', cap=2)
    cq = t.post('u1').conversation.name  # queued (pull)
    n.agent.Pick(A.AgentConversationRequest(agent=t.a('a1'), conversation=cq, request_id=rid()))
    ce = t.post('u2').conversation.name
    n.agent.Pick(A.AgentConversationRequest(agent=t.a('a1'), conversation=ce, request_id=rid()))
    n.agent.EndConversation(A.AgentConversationRequest(agent=t.a('a1'), conversation=ce, request_id=rid()))
    cw = t.post('u3').conversation.name  # waiting
    ghost = t.t + '/conversations/123456789'
    a1, a2, sup = t.a('a1'), t.a('a2'), t.a('sup')
    cases = {
     'hist_empty': lambda: n.agent.GetHistory(A.GetHistoryRequest()),
     'hist_ghost': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation=ghost)),
     'hist_bare': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation='5')),
     'hist_badtoken': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation=cq, page=common_pb2.PageRequest(page_token='zz'))),
     'hist_bigpage': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation=cq, page=common_pb2.PageRequest(page_size=100000))),
     'hist_waiting_a1': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=a1, conversation=cw)),
     'hist_ended_a2': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=a2, conversation=ce)),
     'hist_ghost_agent': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=t.a('ghost'), conversation=cq)),
     'hist_conv_id_overflow': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation=t.t+'/conversations/99999999999999999999999')),
     'hist_conv_id_neg': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation=t.t+'/conversations/-1')),
     'hist_conv_id_0': lambda: n.agent.GetHistory(A.GetHistoryRequest(agent=sup, conversation=t.t+'/conversations/0')),
     'send_empty': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=cq, text='', request_id=rid())),
     'send_long': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=cq, text='x'*8193, request_id=rid())),
     'send_8192_multibyte': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=cq, text='é'*4097, request_id=rid())),
     'send_ended': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=ce, text='x', request_id=rid())),
     'send_waiting': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=cw, text='x', request_id=rid())),
     'send_not_mine': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a2, conversation=cq, text='x', request_id=rid())),
     'send_ghost': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=ghost, text='x', request_id=rid())),
     'send_badtag': lambda: n.agent.SendMessage(A.SendMessageRequest(agent=a1, conversation=cq, text='x', tag=99, request_id=rid())),
     'markread_waiting': lambda: n.agent.MarkRead(A.AgentConversationRequest(agent=a1, conversation=cw, request_id=rid())),
     'markread_ended': lambda: n.agent.MarkRead(A.AgentConversationRequest(agent=a1, conversation=ce, request_id=rid())),
     'markread_ghost': lambda: n.agent.MarkRead(A.AgentConversationRequest(agent=a1, conversation=ghost, request_id=rid())),
     'invite_waiting': lambda: n.agent.InviteRating(A.AgentConversationRequest(agent=a1, conversation=cw, request_id=rid())),
     'invite_ghost': lambda: n.agent.InviteRating(A.AgentConversationRequest(agent=a1, conversation=ghost, request_id=rid())),
     'bothost_ended': lambda: n.agent.SetBotHosting(A.AgentBotHostingRequest(agent=a1, conversation=ce, on=True, request_id=rid())),
     'bothost_ghost': lambda: n.agent.SetBotHosting(A.AgentBotHostingRequest(agent=a1, conversation=ghost, on=True, request_id=rid())),
     'upd_ghost': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=sup, conversation=ghost, note='x', request_id=rid())),
     'upd_waiting_a1': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cw, note='x', request_id=rid())),
     'upd_waiting_sup': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=sup, conversation=cw, note='x', request_id=rid())),
     'upd_longnote': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, note='x'*70000, request_id=rid())),
     'upd_note_20k': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, note='x'*20000, request_id=rid())),
     'upd_many_tags': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, tags=[f't{i}' for i in range(3000)], request_id=rid())),
     'upd_empty_tag': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, tags=[''], request_id=rid())),
     'upd_long_tag': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, tags=['x'*1000], request_id=rid())),
     'upd_star_mask': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, note='star', update_mask=FM(paths=['*']), request_id=rid())),
     'upd_star_plus': lambda: n.agent.UpdateConversation(A.UpdateConversationRequest(agent=a1, conversation=cq, note='star', update_mask=FM(paths=['*','note']), request_id=rid())),
     'prof_bare': lambda: n.agent.UpdateCustomerProfile(A.UpdateCustomerProfileRequest(agent=a1, customer='u1', phone='1', request_id=rid())),
     'prof_ghost': lambda: n.agent.UpdateCustomerProfile(A.UpdateCustomerProfileRequest(agent=sup, customer=t.c('ghost'), phone='1', request_id=rid())),
     'prof_badmask': lambda: n.agent.UpdateCustomerProfile(A.UpdateCustomerProfileRequest(agent=a1, customer=t.c('u1'), update_mask=FM(paths=['nickname']), request_id=rid())),
     'prof_longphone': lambda: n.agent.UpdateCustomerProfile(A.UpdateCustomerProfileRequest(agent=a1, customer=t.c('u1'), phone='1'*1000, request_id=rid())),
     'prof_many_tags': lambda: n.agent.UpdateCustomerProfile(A.UpdateCustomerProfileRequest(agent=a1, customer=t.c('u1'), tags=[f't{i}' for i in range(3000)], request_id=rid())),
     'prof_ctrl_chars': lambda: n.agent.UpdateCustomerProfile(A.UpdateCustomerProfileRequest(agent=a1, customer=t.c('u1'), remark_name='a\x00b', request_id=rid())),
     'whisper_waiting': lambda: n.sup.Whisper(SP.WhisperRequest(supervisor=sup, conversation=cw, text='w', request_id=rid())),
     'whisper_ghost': lambda: n.sup.Whisper(SP.WhisperRequest(supervisor=sup, conversation=ghost, text='w', request_id=rid())),
     'whisper_long': lambda: n.sup.Whisper(SP.WhisperRequest(supervisor=sup, conversation=cq, text='w'*9000, request_id=rid())),
     'whisper_ghost_sup': lambda: n.sup.Whisper(SP.WhisperRequest(supervisor=t.a('ghost'), conversation=cq, text='w', request_id=rid())),
     'rate_ghost': lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=ghost, score=3, request_id=rid())),
     'rate_waiting': lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=cw, score=3, request_id=rid())),
     'rate_longcomment': lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=cq, score=3, comment='c'*20000, request_id=rid())),
     'supend_ghost': lambda: n.sup.EndConversation(SP.SupervisorConversationRequest(supervisor=sup, conversation=ghost, request_id=rid())),
     'supend_ended': lambda: n.sup.EndConversation(SP.SupervisorConversationRequest(supervisor=sup, conversation=ce, request_id=rid())),
     'endbatch_bare': lambda: n.sup.EndBatch(SP.EndBatchRequest(supervisor=sup, conversations=['7'], request_id=rid())),
     'reassign_ghost_agent': lambda: n.sup.ReassignBatch(SP.ReassignBatchRequest(supervisor=sup, conversations=[cq], to_agent=t.a('ghost'), request_id=rid())),
     'reassign_ghost_group': lambda: n.sup.ReassignBatch(SP.ReassignBatchRequest(supervisor=sup, conversations=[cq], to_group=t.g('ghost'), request_id=rid())),
     'reassign_self': lambda: n.sup.ReassignBatch(SP.ReassignBatchRequest(supervisor=sup, conversations=[cq], to_agent=a1, request_id=rid())),
     'board_empty': lambda: n.sup.GetLiveBoard(SP.GetLiveBoardRequest()),
     'agentboard_empty': lambda: n.sup.GetAgentBoard(SP.GetAgentBoardRequest()),
     'agentboard_ghost': lambda: n.sup.GetAgentBoard(SP.GetAgentBoardRequest(tenant='tenants/ghost')),
     'qstats_huge_thr': lambda: n.sup.GetQueueStats(SP.GetQueueStatsRequest(tenant=t.t, threshold=duration_pb2.Duration(seconds=10**12))),
     'qstats_bad_nanos': lambda: n.sup.GetQueueStats(SP.GetQueueStatsRequest(tenant=t.t, threshold=duration_pb2.Duration(seconds=1, nanos=-5))),
     'qstats_ts_far': lambda: n.sup.GetQueueStats(SP.GetQueueStatsRequest(tenant=t.t, start_time=timestamp_pb2.Timestamp(seconds=-10**12))),
     'qstats_ts_far2': lambda: n.sup.GetQueueStats(SP.GetQueueStatsRequest(tenant=t.t, end_time=timestamp_pb2.Timestamp(seconds=10**12))),
     'search_badfilter': lambda: n.agent.SearchConversations(A.SearchConversationsRequest(agent=a1, filter='state == ')),
     'search_bigpage': lambda: n.agent.SearchConversations(A.SearchConversationsRequest(agent=a1, page_size=501)),
     'searchcust_badfilter': lambda: n.agent.SearchCustomers(A.SearchCustomersRequest(agent=a1, filter='nickname = "x"')),
     'list_unacc_ghost': lambda: n.agent.ListUnaccepted(A.ListAgentConversationsRequest(agent=t.a('ghost'))),
     'list_unacc_badtoken': lambda: n.agent.ListUnaccepted(A.ListAgentConversationsRequest(agent=a1, page=common_pb2.PageRequest(page_token='x'))),
     'list_assigned_bigpage': lambda: n.agent.ListAssigned(A.ListAgentConversationsRequest(agent=a1, page=common_pb2.PageRequest(page_size=5000))),
     'qr_put_ghost': lambda: n.agent.PutPersonalQuickReplies(A.PutPersonalQuickRepliesRequest(agent=t.a('ghost'), replies=[], request_id=rid())),
     'shared_qr_longtitle': lambda: n.admin.PutSharedQuickReplies(admin_pb2.PutSharedQuickRepliesRequest(tenant=t.t, replies=[admin_pb2.QuickReply(title='t'*5000, text='x')], request_id=rid())),
     'shared_qr_ghost': lambda: n.admin.PutSharedQuickReplies(admin_pb2.PutSharedQuickRepliesRequest(tenant='tenants/ghost', replies=[], request_id=rid())),
     'set_status_ghost': lambda: n.agent.SetStatus(A.SetStatusRequest(agent=t.a('ghost'), status=S.AGENT_STATUS_ONLINE, request_id=rid())),
     'agent_stream_bare': lambda: next(iter(n.agent.StreamEvents(A.StreamAgentEventsRequest(agent='a1'), timeout=2))),
     'tenant_stream_bare': lambda: next(iter(n.events.StreamEvents(events_pb2.StreamEventsRequest(tenant='x'), timeout=2))),
     'tenant_stream_empty': lambda: next(iter(n.events.StreamEvents(events_pb2.StreamEventsRequest(), timeout=2))),
    }
    o = {}
    for k, f in cases.items():
        c, m = code(f)
        o[k] = c
        if c in ('INTERNAL', 'UNKNOWN') or (c != 'OK' and not m): o[k+'_msg'] = m[:200]
    return o
def expect(o):
    return [f'{k}: {v}' for k, v in o.items() if v in ('INTERNAL','UNKNOWN') or k.endswith('_msg')]
report(run_both(probe), expect)
