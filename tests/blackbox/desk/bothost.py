# SPEC §2/§8 bot hosting for one / batch / agent / all; AgentEvent.BotHosting; customer_message.bot_hosting
from common import *
def probe(n, name, r):
    t = T(n, 'bh'+name.lower(), r, mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=2); t.agent('a2', cap=2)
    s1 = agent_stream(n, t.a('a1'))
    cs = [t.post(f'u{i}').conversation.name for i in range(4)]
    q = t.post('u9').conversation.name  # queued (capacity 2+2)
    o = {}
    o['states'] = [S.ConversationState.Name(t.conv(c).state) for c in cs + [q]]
    by = {c: t.conv(c).agent.split('/')[-1] for c in cs}
    a1c = [c for c in cs if by[c]=='a1']
    cv = n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=t.a('a1'), conversation=a1c[0], on=True, request_id=rid()))
    o['one_on'] = cv.bot_hosting
    ev = s1.wait(lambda e: kind(e)=='bot_hosting' and e.conversation==a1c[0])
    o['one_event'] = ev[0].bot_hosting.on if ev else None
    t.post(f'u{cs.index(a1c[0])}', 'while hosted')
    cm = s1.wait(lambda e: kind(e)=='customer_message' and e.customer_message.text=='while hosted')
    o['cm_flag'] = cm[0].customer_message.bot_hosting if cm else None
    o['agent_other_conv'] = code(lambda: n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=t.a('a2'), conversation=a1c[0], on=False, request_id=rid())))[0]
    o['queued_one'] = code(lambda: n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=t.a('a1'), conversation=q, on=True, request_id=rid())))[0]
    SB = lambda **kw: n.sup.SetBotHosting(supervisor_pb2.SetBotHostingRequest(supervisor=t.a('sup'), request_id=rid(), **kw))
    o['batch'] = SB(conversations=supervisor_pb2.SetBotHostingRequest.ConversationList(conversations=cs[:2] + [q]), on=True).changed
    o['after_batch'] = [t.conv(c).bot_hosting for c in cs + [q]]
    o['agent_sel'] = SB(agent=t.a('a2'), on=True).changed
    o['after_agent'] = [t.conv(c).bot_hosting for c in cs]
    o['all_off'] = SB(all=True, on=False).changed
    o['after_all_off'] = [t.conv(c).bot_hosting for c in cs + [q]]
    o['all_on'] = SB(all=True, on=True).changed
    o['all_on_again'] = SB(all=True, on=True).changed
    o['no_selection'] = code(lambda: SB(on=True))[0]
    o['bad_conv'] = code(lambda: SB(conversations=supervisor_pb2.SetBotHostingRequest.ConversationList(conversations=[t.t+'/conversations/77777']), on=True))
    o['empty_list'] = code(lambda: SB(conversations=supervisor_pb2.SetBotHostingRequest.ConversationList(conversations=[]), on=True))
    o['unknown_agent'] = code(lambda: SB(agent=t.a('ghost'), on=True))[0]
    o['nonsup'] = code(lambda: n.sup.SetBotHosting(supervisor_pb2.SetBotHostingRequest(supervisor=t.a('a1'), all=True, on=True, request_id=rid())))[0]
    time.sleep(0.5)
    o['a1_events'] = [(e.conversation, e.bot_hosting.on) for e in s1.items if kind(e)=='bot_hosting']
    lb = n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t)).conversations
    o['list_flags'] = sorted((c.name, c.bot_hosting) for c in lb)
    la = n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=t.a('a1'))).conversations
    o['assigned_flags'] = sorted((c.name, c.bot_hosting) for c in la)
    n.restart(kill=True)
    o['restart'] = [t.conv(c).bot_hosting for c in cs + [q]]
    # queued conv gets assigned after someone ends -> bot hosting flag?
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=a1c[0], request_id=rid()))
    o['q_after'] = poll(lambda: (S.ConversationState.Name(t.conv(q).state), t.conv(q).bot_hosting) if t.conv(q).state == S.CONVERSATION_STATE_ASSIGNED else None, 5)
    s1.cancel()
    return o
report(run_both(probe))
