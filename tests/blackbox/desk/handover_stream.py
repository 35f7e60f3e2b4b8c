# SPEC §7: an agent that handed over must not see what happens after (agent stream events for the conversation)
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(unreplied_alert=dur(1))
    t = T(n, 'hs'+name.lower(), r)
    t.agent('a1'); t.agent('a2', status=S.AGENT_STATUS_BUSY); t.agent('sup', sup=True, status=0)
    s1 = agent_stream(n, t.a('a1'))
    c = t.post('u1', 'c1').conversation.name
    s1.wait(lambda e: kind(e)=='customer_message')
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    n.agent.Transfer(agent_pb2.TransferRequest(agent=t.a('a1'), conversation=c, to_agent=t.a('a2'), request_id=rid()))
    s1.wait(lambda e: kind(e)=='released')
    mark = len(s1.items)
    t.post('u1', 'after')
    n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c, text='secret-after', request_id=rid()))
    n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid()))
    n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=t.a('a2'), conversation=c, on=True, request_id=rid()))
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a2'), conversation=c, request_id=rid()))
    time.sleep(1.5)
    after = [kind(e) for e in s1.items[mark:] if e.conversation == c]
    s1.cancel()
    return {'a1_events_after_handover': after}
def expect(o):
    return [f"a1 got {o['a1_events_after_handover']} after handing over"] if o['a1_events_after_handover'] else []
report(run_both(probe), expect)
