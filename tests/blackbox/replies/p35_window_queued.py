"""Reply window closing on a queued conversation (web, window 2 s): ends with
reply_window_closed and no end reply; same on both routings."""
from rlib import *
def run(n, r):
    st = A.TenantSettings(channels=[A.ChannelSettings(channel=CH.CHANNEL_WEB, reply_window=dur(2))],
                          replies=A.ReplySettings(manual_end=T('MAN'), idle_end=A.TimedReply(after=dur(1), texts=['IDLE'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', online=False)
    c = e.post('u1', 'hi').conversation.name
    e.wait_state(c, CH.CONVERSATION_STATE_ENDED, 8); e.settle()
    return e.outs(c), [x for x in e.evs(c) if x[0] == 'ended']
report('window closes queued conversation', diff_run(run), ([], [('ended', 'reply_window_closed/queued')]))
