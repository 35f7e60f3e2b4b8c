# History bubble includes the bot stage; events for bot -> queued -> assigned
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(transfer_to_human=True, keywords=[admin_pb2.KeywordRule(keywords=['hours'], texts=['9-5'])])
    t = T(n, 'bh2'+name.lower(), r, settings=st)
    t.agent('a1')
    ev = tenant_stream(n, t.t)
    c = t.post('u1', 'hours?').conversation.name
    t.post('u1', 'human please')
    n.chan.RequestHuman(channel_pb2.ConversationRequest(conversation=c, request_id=rid()))
    poll(lambda: t.conv(c).state == S.CONVERSATION_STATE_ASSIGNED)
    o = {'hist': [(m.sender, m.text) for m in t.hist('a1', c)]}
    time.sleep(0.5)
    o['events'] = [e.type for e in ev.items if e.conversation == c]
    o['transitions'] = [(S.ConversationState.Name(x.to), x.cause) for x in t.conv(c).transitions]
    ev.cancel()
    return o
def expect(o):
    return [] if ['customer', 'hours?'] in o['hist'] else ['bot-stage messages missing from history']
report(run_both(probe), expect)
