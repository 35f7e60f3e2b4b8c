"""Queue and offline min intervals hold across a kill -9 restart (timers/limits are state)."""
from rlib import *

def run(n, r, kind):
    rp = A.ReplySettings()
    if kind == 'queue':
        rp.queue.CopyFrom(A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q'])], min_interval=dur(30)))
    else:
        rp.offline.CopyFrom(A.OfflineReply(texts=['OFF'], min_interval=dur(30)))
    e = Env(n, 't1', r, A.TenantSettings(replies=rp))
    e.agent('a1', cap=1, online=(kind == 'queue'))
    if kind == 'queue': e.post('u0', 'x')
    c = e.post('u1', 'm1').conversation.name
    e.post('u1', 'm2'); e.settle()
    before = e.outs(c)
    e.close(); n.restart(kill=True)
    e.out = Collector(n, 't1', 'out'); e.ev = Collector(n, 't1', 'ev'); time.sleep(1)
    e.post('u1', 'm3'); e.post('u1', 'm4'); e.settle(1)
    return before, e.outs(c)
report('queue min_interval across kill -9', diff_run(lambda n, r: run(n, r, 'queue')), ([('QUEUE', 'Q')], [('QUEUE', 'Q')]))
report('offline min_interval across kill -9', diff_run(lambda n, r: run(n, r, 'offline')), ([('OFFLINE', 'OFF')], [('OFFLINE', 'OFF')]))
