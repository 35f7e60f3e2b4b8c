# Lifecycle: bot -> queued (RequestHuman) -> offered -> assigned -> ended; new conversation after end; transitions; events.
from rt import *
import threading
def probe(n, r, o):
    t = T(n, 't1', r, transfer_to_human=True)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(30))
    t.agent('a1', ['g1'], cap=2)
    t.agent('sup', ['g1'], cap=1, supervisor=True)
    events = []
    def rd():
        try:
            for e in n.events.StreamEvents(events_pb2.StreamEventsRequest(tenant='tenants/t1')):
                events.append(e)
        except grpc.RpcError: pass
    th = threading.Thread(target=rd, daemon=True); th.start()
    c = t.post('u1'); o.lab(c.name, 'c1'); o('open', o.c(c))
    c_again = t.post('u1', text='more'); o('second msg same conv', o.c(c_again))
    o('pick bot conv', err(lambda: t.pick('a1', c.name)))
    h = n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c.name, request_id=rid())); o('request human', o.c(h))
    o('request human again', err(lambda: n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c.name, request_id=rid()))))
    t.status('a1', S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    o('a1 online', o.c(t.conv(c.name)))
    o('accept', o.c(t.accept('a1', c.name)))
    o('accept twice', err(lambda: t.accept('a1', c.name)))
    o('end', o.c(t.end('a1', c.name)))
    c2 = t.post('u1', text='back'); o.lab(c2.name, 'c2'); o('new after end', o.c(c2), 'same id?', c2.name == c.name)
    cu = n.admin.GetCustomer(admin_pb2.GetCustomerRequest(name=t.c('u1'))); o('customer last_agent', cu.last_agent, 'open', cu.open_conversation)
    n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c2.name, request_id=rid()))
    time.sleep(0.3)
    o('c2 after human', o.c(t.conv(c2.name)))
    o('sup end', o.c(n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('sup'), conversation=c2.name, request_id=rid()))))
    c3 = t.post('u1'); o.lab(c3.name, 'c3')
    o('close bot conv', o.c(n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=c3.name, request_id=rid()))))
    c4 = t.post('u2'); o.lab(c4.name, 'c4')
    c5 = t.post('u3'); o.lab(c5.name, 'c5')
    n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c5.name, request_id=rid())); time.sleep(0.2)
    eb = n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c4.name, c5.name, c.name], request_id=rid()))
    o('end batch', [(o.lab(x.conversation), x.ok, x.error) for x in eb.results])
    for x in [c, c2, c3, c4, c5]:
        o('trans', o.lab(x.name), [(ST[y.to][19:], y.cause, y.agent.split('/')[-1]) for y in t.conv(x.name).transitions])
    time.sleep(0.5)
    o('events', [(o.lab(e.conversation), e.type, e.WhichOneof('detail'), e.agent.split('/')[-1]) for e in events if e.type != 'agent_status_changed'])
    for e in events:
        if e.type in ('ended', 'assigned', 'queued', 'offered'): o('  ev', o.lab(e.conversation), e.type, str(getattr(e, e.WhichOneof('detail'))).replace('\n', ' ').replace('waited_ms', 'W'))
compare(probe)
