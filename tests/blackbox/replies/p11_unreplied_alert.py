"""SPEC §5 unreplied alert: to the assigned agent, or all group members when unassigned; event
`unreplied_alert`; survives kill -9."""
from rlib import *

def run(n, r, restart=False):
    st = A.TenantSettings(unreplied_alert=dur(2), offline_grace=dur(3600))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=1); e.agent('a2', cap=1); e.agent('a3', cap=1, online=False)
    e.agent('b1', groups=('g2',) if False else ('g1',), cap=1, online=False)
    c1 = e.post('u1', 'hi').conversation.name   # a1 or a2
    c2 = e.post('u2', 'hi').conversation.name   # the other
    e.send(e.conv(c2).agent.split('/')[-1], c2, 'answered')  # no alert for c2
    c3 = e.post('u3', 'hi').conversation.name   # queued: all members
    if restart:
        time.sleep(0.8); e.close(); n.restart(kill=True)
        e.out = Collector(n, 't1', 'out'); e.ev = Collector(n, 't1', 'ev')
    time.sleep(4)
    a1 = e.conv(c1).agent.split('/')[-1]
    r = {'c1': [x for x in e.evs(c1) if x[0] == 'unreplied_alert'],
         'c2': [x for x in e.evs(c2) if x[0] == 'unreplied_alert'],
         'c3': [x for x in e.evs(c3) if x[0] == 'unreplied_alert']}
    r['c1'] = [(k, v.replace(a1, 'ASSIGNED')) for k, v in r['c1']]
    return r

exp = {'c1': [('unreplied_alert', 'ASSIGNED')], 'c2': [], 'c3': [('unreplied_alert', 'a1,a2,a3,b1')]}
report('unreplied alert', diff_run(run), exp)
report('unreplied alert across kill -9', diff_run(lambda n, r: run(n, r, True)), exp)
