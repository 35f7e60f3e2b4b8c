"""SPEC §5: timers due while the node is down (kill -9, 4 s down) fire once after restart."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(unreplied_alert=dur(2),
        channels=[A.ChannelSettings(channel=CH.CHANNEL_APP, reply_window=dur(3))],
        replies=A.ReplySettings(
            agent_no_response=A.TimedReply(after=dur(2), texts=['ANR']),
            customer_no_response=A.TimedReply(after=dur(2), texts=['CNR']),
            idle_end=A.TimedReply(after=dur(20), texts=['IDLE'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=5)
    c1 = e.post('u1', 'hi').conversation.name                       # ANR + alert due at +2
    c2 = e.post('u2', 'hi').conversation.name; e.send('a1', c2, 'yo')  # CNR due at +2
    c3 = e.post('u3', 'hi', channel=CH.CHANNEL_APP).conversation.name; e.send('a1', c3, 'yo')  # window ends at +3
    time.sleep(0.5)
    e.close(); n.stop(kill=True); time.sleep(4); n.start()
    e.out = Collector(n, 't1', 'out'); e.ev = Collector(n, 't1', 'ev')
    time.sleep(5)
    keep = ('unreplied_alert', 'ended')
    return {k: (e.outs(c), [x for x in e.evs(c) if x[0] in keep]) for k, c in (('c1', c1), ('c2', c2), ('c3', c3))}
exp = {'c1': ([('AGENT_NO_RESPONSE', 'ANR')], [('unreplied_alert', 'a1')]),
       'c2': ([('AGENT', 'yo'), ('CUSTOMER_NO_RESPONSE', 'CNR')], []),
       'c3': ([('AGENT', 'yo'), ('CUSTOMER_NO_RESPONSE', 'CNR')], [('ended', 'reply_window_closed/assigned')])}
report('timers due during downtime fire once', diff_run(run), exp)
