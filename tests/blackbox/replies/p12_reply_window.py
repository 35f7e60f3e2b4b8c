"""SPEC §5 reply window (configurable per channel: ChannelSettings.reply_window)."""
from rlib import *

def st(channel, w, **rp):
    return A.TenantSettings(channels=[A.ChannelSettings(channel=channel, reply_window=dur(w))],
                            replies=A.ReplySettings(**rp))

def try_send(e, a, c, text, **kw):
    try: e.send(a, c, text, **kw); return 'ok'
    except grpc.RpcError as x: return x.code().name

def web_end(n, r):
    e = Env(n, 't1', r, st(CH.CHANNEL_WEB, 3))
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name
    time.sleep(2); s1 = try_send(e, 'a1', c, 'reply at +2')
    time.sleep(1.7)  # +3.7: 1.7 s after the service side's last message; 3.7 s after the customer's
    st_mid = CH.ConversationState.Name(e.conv(c).state)
    s2 = try_send(e, 'a1', c, 'reply at +3.7')
    e.wait_state(c, CH.CONVERSATION_STATE_ENDED, 10); e.settle()
    return s1, st_mid, s2, [x for x in e.evs(c) if x[0] == 'ended']
report('web window: open conversation must accept agent messages', diff_run(web_end),
       ('ok', 'CONVERSATION_STATE_ASSIGNED', 'ok', [('ended', 'reply_window_closed/assigned')]))

def web_end_simple(n, r):
    e = Env(n, 't1', r, st(CH.CHANNEL_WEB, 2))
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name
    e.send('a1', c, 'x')
    ok = e.wait_state(c, CH.CONVERSATION_STATE_ENDED, 10); e.settle()
    return ok, [x for x in e.evs(c) if x[0] == 'ended'], try_send(e, 'a1', c, 'late')
report('web window ends conversation', diff_run(web_end_simple), (True, [('ended', 'reply_window_closed/assigned')], 'FAILED_PRECONDITION'))

def messenger(n, r):
    e = Env(n, 't1', r, st(CH.CHANNEL_MESSENGER, 2))
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi', channel=CH.CHANNEL_MESSENGER).conversation.name
    time.sleep(2.5)
    res = [CH.ConversationState.Name(e.conv(c).state), try_send(e, 'a1', c, 'untagged')]
    for tag in (CH.MESSAGE_TAG_CONFIRMED_EVENT_UPDATE, CH.MESSAGE_TAG_POST_PURCHASE_UPDATE, CH.MESSAGE_TAG_ACCOUNT_UPDATE):
        res.append(try_send(e, 'a1', c, 'tagged', tag=tag))
    e.post('u1', 'back', channel=CH.CHANNEL_MESSENGER)
    res.append(try_send(e, 'a1', c, 'within again')); e.settle()
    tags = [m.tag for m in e.out.snap() if m.conversation == c]
    res.append([CH.MessageTag.Name(t) for t in tags])
    return res
report('messenger window tags', diff_run(messenger),
       ['CONVERSATION_STATE_ASSIGNED', 'FAILED_PRECONDITION', 'ok', 'ok', 'ok', 'ok',
        ['MESSAGE_TAG_CONFIRMED_EVENT_UPDATE', 'MESSAGE_TAG_POST_PURCHASE_UPDATE', 'MESSAGE_TAG_ACCOUNT_UPDATE', 'MESSAGE_TAG_UNSPECIFIED']])

def messenger_auto(n, r):
    # automatic replies carry no tag: past the Messenger window they must not go out untagged
    e = Env(n, 't1', r, st(CH.CHANNEL_MESSENGER, 2, manual_end=T('BYE'),
                          agent_no_response=A.TimedReply(after=dur(3), texts=['ANR'])))
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi', channel=CH.CHANNEL_MESSENGER).conversation.name
    time.sleep(3.6)   # ANR fires at +3, past the 2 s window
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c)); e.settle()
    return [(k, t) for k, t in e.outs(c)]
report('messenger: no untagged automatic replies past the window', diff_run(messenger_auto), [])
