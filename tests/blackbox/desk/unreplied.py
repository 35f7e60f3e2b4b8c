# SPEC §6 read-but-unreplied marker
from common import *
def probe(n, name, r):
    t = T(n, 'ru'+name.lower(), r)
    t.agent('a1')
    s1 = agent_stream(n, t.a('a1'))
    c = t.post('u1').conversation.name
    o = {}
    o['before_read'] = t.conv(c).read_unreplied
    mr = n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o['markread_resp'] = mr.read_unreplied
    o['get_after_read'] = t.conv(c).read_unreplied
    o['event'] = len(s1.wait(lambda e: kind(e)=='read_unreplied' and e.conversation==c, 3))
    la = n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=t.a('a1'))).conversations
    o['list_flag'] = [x.read_unreplied for x in la]
    t.send('a1', c, 'answer')
    o['after_reply'] = t.conv(c).read_unreplied
    la = n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=t.a('a1'))).conversations
    o['list_after_reply'] = [x.read_unreplied for x in la]
    t.post('u1', 'again')
    o['after_new_msg'] = t.conv(c).read_unreplied
    n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o['after_read2'] = t.conv(c).read_unreplied
    t.post('u1', 'again2')  # new customer message after read: last msg not read any more
    o['after_unread_msg'] = t.conv(c).read_unreplied
    # mark read by a different agent
    t.agent('a2')
    o['markread_other'] = code(lambda: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid())))[0]
    n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    n.restart(kill=True)
    o['after_restart'] = poll(lambda: t.conv(c).read_unreplied, 5)
    s1.cancel()
    return o
def expect(o):
    f = []
    if o.get('before_read'): f.append('marked before read')
    if not o.get('get_after_read'): f.append('not marked after read')
    if not o.get('event'): f.append('no read_unreplied event')
    if o.get('after_reply'): f.append('still marked after reply')
    if o.get('after_new_msg'): f.append('marked though new msg unread')
    if not o.get('after_read2'): f.append('not marked after 2nd read')
    if o.get('after_unread_msg'): f.append('still marked after new unread customer msg')
    if o.get('markread_other') != 'PERMISSION_DENIED' and o.get('markread_other') != 'FAILED_PRECONDITION': f.append(f"other agent MarkRead: {o.get('markread_other')}")
    if o.get('after_restart') is not True: f.append('marker lost on restart')
    return f
report(run_both(probe), expect)
