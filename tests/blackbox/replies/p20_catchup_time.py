"""Check: timers that came due while the node was down (kill -9) fire at different times on
the two routings: TENANT_ACTOR fires them at their due time (back-dated), ACTORS at restart
time; chained deadlines then diverge (here the reply window, which an automatic reply
extends, closes on TENANT_ACTOR right at restart but only 3 s later on ACTORS)."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(
        channels=[A.ChannelSettings(channel=CH.CHANNEL_APP, reply_window=dur(3))],
        replies=A.ReplySettings(customer_no_response=A.TimedReply(after=dur(2), texts=['CNR'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=5)
    c = e.post('u1', 'hi', channel=CH.CHANNEL_APP).conversation.name
    m = e.send('a1', c, 'yo').message
    t_agent = m.at.ToMilliseconds()
    e.close(); n.stop(kill=True); time.sleep(5); n.start()
    t_up = time.time() * 1000
    e.out = Collector(n, 't1', 'out'); e.ev = Collector(n, 't1', 'ev')
    e.wait_state(c, CH.CONVERSATION_STATE_ENDED, 15); e.settle()
    cnr = [x for x in e.out.snap() if x.reply_kind == CH.REPLY_KIND_CUSTOMER_NO_RESPONSE]
    end = [x for x in e.ev.snap() if x.type == 'ended' and x.conversation == c]
    cnr_at = round((cnr[0].at.ToMilliseconds() - t_agent) / 1000) if cnr else None
    end_after_up = round((end[0].at.ToMilliseconds() - t_up) / 1000) if end else None
    return {'cnr_sent_at_s_after_agent_msg': cnr_at, 'ended_s_after_restart': end_after_up,
            'cause': end[0].ended.cause if end else None}
report('overdue timers fire alike on both routings', diff_run(run))
