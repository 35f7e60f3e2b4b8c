"""Unreplied alert: once per unanswered streak; re-armed after the agent answers; not armed by a
keyword-answered message? (keyword is automatic: the customer is still unanswered by a human)."""
from rlib import *
def run(n, r):
    e = Env(n, 't1', r, A.TenantSettings(unreplied_alert=dur(1), keywords=[A.KeywordRule(keywords=['price'], texts=['KW'])]))
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name
    time.sleep(1.5); e.post('u1', 'still?'); time.sleep(1.5)
    n1 = len([x for x in e.evs(c) if x[0] == 'unreplied_alert'])
    e.send('a1', c, 'sorry'); e.post('u1', 'price?'); time.sleep(1.6)
    n2 = len([x for x in e.evs(c) if x[0] == 'unreplied_alert'])
    return n1, n2
report('alert once per streak, re-armed after answer', diff_run(run), (1, 2))
