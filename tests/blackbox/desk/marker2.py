# read-but-unreplied vs whisper / automatic replies / bot hosting; first_response not set by whisper/automatic replies
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(message_received=admin_pb2.MessageReceivedReply(texts=['auto ack'], also_in_session=True),
                                  keywords=[admin_pb2.KeywordRule(keywords=['price'], texts=['price list'])])
    t = T(n, 'mk'+name.lower(), r, settings=st)
    t.agent('a1'); t.agent('sup', sup=True, status=0)
    ev = tenant_stream(n, t.t)
    c = t.post('u1', 'hello').conversation.name
    n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    o = {}
    n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='tell them X', request_id=rid()))
    cv = t.conv(c)
    o['after_whisper'] = (cv.read_unreplied, cv.HasField('first_response'), cv.agent_messages)
    t.post('u1', 'price?')
    n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c, request_id=rid()))
    cv = t.conv(c)
    o['after_keyword_read'] = (cv.read_unreplied, cv.HasField('first_response'), cv.automatic_messages)
    n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=t.a('a1'), conversation=c, on=True, request_id=rid()))
    cv = t.conv(c)
    o['after_bothost'] = (cv.read_unreplied, cv.HasField('first_response'))
    n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=t.a('a1'), conversation=c, on=False, request_id=rid()))
    time.sleep(1.0)
    t.send('a1', c, 'answer')
    cv = t.conv(c)
    o['after_answer'] = (cv.read_unreplied, cv.HasField('first_response'), cv.first_response.ToMilliseconds() >= 1000)
    fr = ev.wait(lambda e: e.type == 'first_response')
    o['fr_event'] = (fr[0].first_response.agent, fr[0].first_response.since_opened_ms >= 1000) if fr else None
    o['fr_event_matches'] = bool(fr) and abs(fr[0].first_response.since_opened_ms - cv.first_response.ToMilliseconds()) < 5
    t.send('a1', c, 'answer2')
    time.sleep(0.3)
    o['fr_events_count'] = len([e for e in ev.items if e.type == 'first_response'])
    lb = {x.conversation: x for x in n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t)).conversations}
    x = lb[c]
    o['board'] = (x.messages, x.customer_messages, x.agent_messages, x.first_response.ToMilliseconds() == cv.first_response.ToMilliseconds())
    ev.cancel()
    return o
def expect(o):
    f = []
    if not o['after_whisper'][0]: f.append('whisper cleared read-unreplied marker')
    if o['after_whisper'][1]: f.append('whisper set first_response')
    if o['after_whisper'][2]: f.append('whisper counted as agent message')
    if o['after_keyword_read'][1]: f.append('automatic reply set first_response')
    if not o['after_keyword_read'][0]: f.append('automatic (keyword) reply cleared marker')
    if o['after_answer'][0]: f.append('marker kept after agent answer')
    if o['fr_events_count'] != 1: f.append(f"first_response events: {o['fr_events_count']}")
    return f
report(run_both(probe), expect)
