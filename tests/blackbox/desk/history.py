# SPEC §7 history bubble; §8 whisper
from common import *
def texts(h): return [(m.sender, m.text) for m in h]
def probe(n, name, r):
    t = T(n, 'hi'+name.lower(), r)
    t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('a3'); t.agent('sup', sup=True, status=0)
    tenant = t.t
    out = Stream(n.chan.StreamOutbound(channel_pb2.StreamOutboundRequest(tenant=tenant)))
    s1 = agent_stream(n, t.a('a1'))
    c = t.post('u1', 'c1').conversation.name
    o = {}
    o['agent0'] = t.conv(c).agent
    t.send('a1', c, 'r1')
    w = n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='w1', request_id=rid()))
    o['whisper_msg'] = (w.message.sender, w.message.agent, w.message.text)
    ws = s1.wait(lambda e: kind(e)=='whisper')
    o['whisper_event'] = (ws[0].whisper.supervisor, ws[0].whisper.text) if ws else None
    t.post('u1', 'c2')
    # direct transfer to a2 (busy agent: allowed? use a3 online)
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_agent=t.a('a3'), request_id=rid()))
    o['after_tr_agent'] = t.conv(c).agent
    t.send('a3', c, 'r2'); t.post('u1', 'c3')
    n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='w2', request_id=rid()))
    o['h_a3'] = texts(t.hist('a3', c))
    o['h_a1'] = texts(t.hist('a1', c))
    o['h_sup'] = texts(t.hist('sup', c))
    o['h_a2'] = code(lambda: t.hist('a2', c))[0]
    time.sleep(0.5)
    o['outbound'] = [(m.text, m.agent != '') for m in out.items if m.conversation == c]
    o['whisper_to_customer'] = any(m.text.startswith('w') for m in out.items)
    # a1's stream must not see after handover messages
    time.sleep(0.3)
    o['a1_stream_after'] = [e.customer_message.text for e in s1.items if kind(e)=='customer_message']
    # whisper by non-supervisor
    o['whisper_nonsup'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('a1'), conversation=c, text='x', request_id=rid())))[0]
    o['whisper_empty'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='', request_id=rid())))[0]
    # transfer back to a1: a1 sees all?
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a3'), conversation=c, to_agent=t.a('a1'), request_id=rid()))
    o['h_a1_back'] = texts(t.hist('a1', c))
    o['h_a3_after'] = texts(t.hist('a3', c))
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o['whisper_ended'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='x', request_id=rid())))[0]
    o['h_a3_ended'] = texts(t.hist('a3', c))
    # new conversation of same customer (remembers last agent); a3 served prior conv
    c2 = t.post('u1', 'new').conversation.name
    o['new_conv_agent'] = t.conv(c2).agent
    o['h_c2_a3'] = code(lambda: texts(t.hist('a3', c2)))[0]
    n.restart(kill=True)
    o['restart_h_a3'] = texts(t.hist('a3', c))
    o['restart_h_a1'] = texts(t.hist('a1', c))
    out.cancel(); s1.cancel()
    return o
def expect(o):
    f = []
    if o.get('whisper_to_customer'): f.append('whisper reached customer outbound')
    h3 = o.get('h_a3', [])
    if ['customer','c1'] not in h3 or ['agent','r1'] not in h3: f.append('taking-over agent misses earlier transcript')
    h1 = o.get('h_a1', [])
    if any(x[1] in ('r2','c3','w2') for x in h1): f.append('earlier agent sees post-handover messages')
    if ['whisper','w1'] not in h3: f.append('whisper not visible to later agent')
    if o.get('h_a2') != 'PERMISSION_DENIED': f.append(f"never-served agent history: {o.get('h_a2')}")
    if o.get('whisper_nonsup') != 'PERMISSION_DENIED': f.append(f"non-supervisor whisper: {o.get('whisper_nonsup')}")
    if any(x in ('c3',) for x in o.get('a1_stream_after', [])): f.append('a1 stream got customer msg after handover')
    if o.get('whisper_ended') != 'FAILED_PRECONDITION': f.append(f"whisper on ended conversation: {o.get('whisper_ended')} (expected FAILED_PRECONDITION as on tenant actor)")
    return f
report(run_both(probe), expect)
