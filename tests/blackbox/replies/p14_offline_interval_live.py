"""SPEC §4.5: offline min interval (0 = every message); the offline condition follows agents'
status changes while a conversation waits (offline reply replaces the queue reply)."""
from rlib import *

def interval(iv):
    def run(n, r):
        e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(offline=A.OfflineReply(texts=['OFF'], min_interval=dur(iv)))))
        e.agent('a1', online=False)
        c = e.post('u1', 'm0').conversation.name
        time.sleep(0.5); e.post('u1', 'm1'); time.sleep(1.8); e.post('u1', 'm2'); e.settle()
        return len(e.outs(c))
    return run
report('offline interval 0: every message', diff_run(interval(0)), 3)
report('offline interval 2s', diff_run(interval(2)), 2)

def live(n, r):
    st = A.TenantSettings(offline_grace=dur(3600), replies=A.ReplySettings(
        offline=A.OfflineReply(texts=['OFF']),
        queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q{{queue_num}}'])])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=1)
    c0 = e.post('u0', 'x').conversation.name
    c = e.post('u1', 'm0').conversation.name; e.settle()          # queued, a1 online: Q1
    e.status('a1', CH.AGENT_STATUS_OFFLINE); time.sleep(1.0)       # all offline now
    e.post('u1', 'm1'); e.settle()                                 # expect OFF
    e.status('a1', CH.AGENT_STATUS_ONLINE); time.sleep(1.0)        # online again (still full)
    e.post('u1', 'm2'); e.settle()                                 # expect Q1
    return e.outs(c)
report('offline condition follows status while queued', diff_run(live), [('QUEUE', 'Q1'), ('OFFLINE', 'OFF'), ('QUEUE', 'Q1')])
