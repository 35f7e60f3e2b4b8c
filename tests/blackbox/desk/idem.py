# Idempotency: same request_id same answer; reused id with different content/call refused (README "a reused id, which is refused")
from common import *
def probe(n, name, r):
    t = T(n, 'id'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10); t.agent('a2')
    c1 = t.post('u1').conversation.name; c2 = t.post('u2').conversation.name
    a1 = t.conv(c1).agent
    a1n = a1.split('/')[-1]
    o = {}
    # SendMessage retried: same answer, one message
    rq = rid()
    m1 = n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='once', request_id=rq))
    m2 = n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='once', request_id=rq))
    o['send_retry_same'] = m1.message.seq == m2.message.seq
    o['send_count'] = t.conv(c1).agent_messages
    # same id, different text
    o['send_reuse_diff_text'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='different', request_id=rq)))[0]
    o['send_count2'] = t.conv(c1).agent_messages
    # same id on different conversation
    a2c = t.conv(c2).agent
    o['send_reuse_other_conv'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a2c, conversation=c2, text='x', request_id=rq)))
    # cross-kind reuse: SendMessage id reused on UpdateConversation, Whisper, MarkRead, SetStatus, PostMessage, RateConversation, Update profile, PutPersonalQuickReplies
    calls = {
      'UpdateConversation': lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=a1, conversation=c1, note='nn', request_id=rq)),
      'Whisper': lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c1, text='w', request_id=rq)),
      'MarkRead': lambda: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)),
      'SetStatus': lambda: n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=a1, status=S.AGENT_STATUS_BUSY, request_id=rq)),
      'PostMessage': lambda: n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='zz', request_id=rq)),
      'Rate': lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c1, score=3, request_id=rq)),
      'Profile': lambda: n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=a1, customer=t.c('u1'), phone='1', request_id=rq)),
      'QuickReplies': lambda: n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=a1, replies=[admin_pb2.QuickReply(title='a', text='b')], request_id=rq)),
      'InviteRating': lambda: n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)),
      'BotHosting': lambda: n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=a1, conversation=c1, on=True, request_id=rq)),
      'SupBotHostingAll': lambda: n.sup.SetBotHosting(supervisor_pb2.SetBotHostingRequest(supervisor=t.a('sup'), all=True, on=True, request_id=rq)),
      'SupSetStatus': lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('sup'), agent=a1, status=S.AGENT_STATUS_AWAY, request_id=rq)),
      'EndBatch': lambda: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c2], request_id=rq)),
      'AgentEnd': lambda: n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)),
    }
    for k, f in calls.items():
        cd, msg = code(f)
        o['reuse_'+k] = cd
        if cd == 'INTERNAL' or cd == 'UNKNOWN': o['reuse_'+k+'_msg'] = msg
    cv = t.conv(c1)
    o['c1_after'] = (S.ConversationState.Name(cv.state), cv.note, cv.bot_hosting, cv.rating.score, cv.agent_messages)
    o['a1_status'] = S.AgentStatus.Name(n.admin.GetAgent(admin_pb2.GetAgentRequest(name=a1)).status)
    o['c2_state'] = S.ConversationState.Name(t.conv(c2).state)
    o['qr'] = len(n.agent.ListQuickReplies(agent_pb2.ListQuickRepliesRequest(agent=a1)).personal)
    o['phone'] = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))).phone
    # retry after restart returns same answer
    n.restart(kill=True)
    m3 = n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='once', request_id=rq))
    o['send_retry_after_restart'] = m3.message.seq == m1.message.seq
    o['count_after_restart'] = t.conv(c1).agent_messages
    o['long_rid'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='x', request_id='x'*1000)))[0]
    return o
def expect(o):
    f = []
    for k, v in o.items():
        if k.startswith('reuse_') and v in ('OK',): f.append(f'{k}: reused request_id accepted (OK)')
        if v in ('INTERNAL','UNKNOWN'): f.append(f'{k}: {v}')
    if o.get('send_count') != 1 or o.get('send_count2') != 1: f.append('SendMessage retried twice')
    return f
report(run_both(probe), expect)
