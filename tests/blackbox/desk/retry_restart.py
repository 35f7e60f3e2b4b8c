# Retries with the same request_id, immediately and after kill -9 restart, act once and answer the same (my-area calls)
from common import *
def probe(n, name, r):
    t = T(n, 'rr'+name.lower(), r)
    t.agent('a1', cap=10); t.agent('sup', sup=True, status=0)
    out = Stream(n.chan.StreamOutbound(channel_pb2.StreamOutboundRequest(tenant=t.t)))
    c = t.post('u1').conversation.name
    ids = {k: rid() for k in ('invite','whisper','send','note','prof','qr','rate','tags')}
    calls = {
      'invite': lambda: n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=ids['invite'])).agent_messages,
      'whisper': lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='w', request_id=ids['whisper'])).message.seq,
      'send': lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=t.a('a1'), conversation=c, text='s', request_id=ids['send'])).message.seq,
      'note': lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, note='n1', request_id=ids['note'])).note,
      'prof': lambda: n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=t.c('u1'), phone='1', request_id=ids['prof'])).phone,
      'qr': lambda: len(n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[admin_pb2.QuickReply(title='a', text='b')], request_id=ids['qr'])).personal),
      'rate': lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=4, request_id=ids['rate'])).rating.score,
    }
    o = {}
    first = {k: f() for k, f in calls.items()}
    # change state after first answers so a re-apply would be visible
    n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('a1'), conversation=c, note='n2', request_id=rid()))
    n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=t.a('a1'), customer=t.c('u1'), phone='2', request_id=rid()))
    n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c, score=1, request_id=rid()))
    again = {k: f() for k, f in calls.items()}
    o['same_answer_now'] = {k: first[k] == again[k] for k in calls}
    n.restart(kill=True)
    after = {}
    for k, f in calls.items():
        try: after[k] = f()
        except grpc.RpcError as e: after[k] = e.code().name
    o['same_answer_after_restart'] = {k: first[k] == after[k] for k in calls}
    o['diff'] = {k: (first[k], after[k]) for k in calls if first[k] != after[k]}
    cv = t.conv(c)
    o['final'] = (cv.note, cv.rating.score, n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))).phone, cv.agent_messages)
    h = t.hist('sup', c)
    o['whispers'] = sum(1 for m in h if m.sender == 'whisper')
    o['invites'] = sum(1 for m in h if m.reply_kind == S.REPLY_KIND_RATING_INVITATION)
    o['sends'] = sum(1 for m in h if m.sender == 'agent' and m.text == 's')
    out.cancel()
    return o
def expect(o):
    f = []
    for k, v in o['same_answer_now'].items():
        if not v: f.append(f'{k}: retry answer differs')
    for k, v in o['same_answer_after_restart'].items():
        if not v: f.append(f"{k}: retry after restart answer differs {o['diff'].get(k)}")
    if o['final'][:3] != ['n2', 1, '2']: f.append(f"retry re-applied: {o['final']}")
    if (o['whispers'], o['invites'], o['sends']) != (1, 1, 1): f.append(f"duplicates whispers/invites/sends {(o['whispers'], o['invites'], o['sends'])}")
    return f
report(run_both(probe), expect)
