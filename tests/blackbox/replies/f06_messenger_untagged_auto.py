"""FINDING (both routings): SPEC §5 "Messenger: 7 days, after which a reply must carry one of
the tags ... or be refused". Agent messages past the window are refused without a tag, but
automatic replies (which never carry a tag, OutboundMessage.tag unset) still go out past the
window: here agent-no-response and manual-end replies. Window shortened to 2 s
(ChannelSettings.reply_window). Cause: session.rs send_auto never checks the reply window."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(channels=[A.ChannelSettings(channel=CH.CHANNEL_MESSENGER, reply_window=dur(2))],
        replies=A.ReplySettings(manual_end=T('BYE'), agent_no_response=A.TimedReply(after=dur(3), texts=['ANR'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi', channel=CH.CHANNEL_MESSENGER).conversation.name
    time.sleep(3.6)
    try: e.send('a1', c, 'untagged'); agent = 'ok'
    except grpc.RpcError as x: agent = x.code().name
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c)); e.settle()
    untagged = [(k, t) for (k, t), m in zip(e.outs(c), [m for m in e.out.snap() if m.conversation == c]) if m.tag == 0]
    return agent, untagged
report('no untagged message reaches a Messenger customer past the window', diff_run(run), ('FAILED_PRECONDITION', []))
