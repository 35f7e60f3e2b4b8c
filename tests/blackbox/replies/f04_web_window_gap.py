"""FINDING (spec deviation, both routings): SPEC §5 "reply window: after the service side's last
message, if the customer does not write within 48 hours the conversation ends and no more
messages can be sent". The conversation's end is scheduled from the service side's last message
(conversation.rs deadlines: max(opened, last_customer, last_service) + window), but
SendMessage checks the window from the customer's last message (session.rs agent_message:
window_from = last_customer_at). So between the two instants the conversation is still open and
assigned, yet its agent is refused (FAILED_PRECONDITION OUTSIDE_REPLY_WINDOW), while automatic
replies still go out. Window shortened to 3 s (ChannelSettings.reply_window)."""
from rlib import *

def try_send(e, a, c, text):
    try: e.send(a, c, text); return 'ok'
    except grpc.RpcError as x: return x.code().name

def run(n, r):
    st = A.TenantSettings(channels=[A.ChannelSettings(channel=CH.CHANNEL_WEB, reply_window=dur(3))],
                          replies=A.ReplySettings(customer_no_response=A.TimedReply(after=dur(1.5), texts=['CNR auto'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name
    time.sleep(2); s1 = try_send(e, 'a1', c, 'agent reply at +2 s')
    time.sleep(1.7)   # +3.7 s: 1.7 s after the service side's last message
    state = CH.ConversationState.Name(e.conv(c).state)
    s2 = try_send(e, 'a1', c, 'agent reply at +3.7 s')
    e.settle()
    return s1, state, s2, e.outs(c)
report('agent may send while the conversation is still open in its window', diff_run(run),
       ('ok', 'CONVERSATION_STATE_ASSIGNED', 'ok', [('AGENT', 'agent reply at +2 s'), ('CUSTOMER_NO_RESPONSE', 'CNR auto'), ('AGENT', 'agent reply at +3.7 s')]))
