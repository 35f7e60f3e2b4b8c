"""SPEC §5: all timers survive a node failure (kill -9), neither lost nor doubled."""
from rlib import *

def st():
    return A.TenantSettings(offline_grace=dur(3600),
        replies=A.ReplySettings(
            agent_no_response=A.TimedReply(after=dur(3), texts=['ANR']),
            idle_end=A.TimedReply(after=dur(5), texts=['IDLE']),
            offline=A.OfflineReply(texts=['OFF'])),
        keywords=[A.KeywordRule(keywords=['price'], texts=['KW'])])

def reopen(e, n):
    e.close(); n.restart(kill=True)
    e.out = Collector(n, e.tid, 'out'); e.ev = Collector(n, e.tid, 'ev')

def run(n, r):
    e = Env(n, 't1', r, st())
    e.agent('a1', cap=5)
    c1 = e.post('u1', 'hi').conversation.name        # ANR at +3, idle end at +5
    c2 = e.post('u2', 'hi').conversation.name
    e.send('a1', c2, 'hello'); e.post('u2', 'price?')  # keyword: no ANR for c2
    c3 = e.post('u3', 'hi').conversation.name
    e.send('a1', c3, 'hello'); e.post('u3', 'x')      # ANR due for c3 at +3
    time.sleep(1.0)
    reopen(e, n)
    time.sleep(8)
    res = {k: (e.outs(c), [x for x in e.evs(c) if x[0] == 'ended']) for k, c in [('c1', c1), ('c2', c2), ('c3', c3)]}
    return res

exp = {'c1': ([('AGENT_NO_RESPONSE', 'ANR'), ('IDLE_END', 'IDLE')], [('ended', 'idle_timeout/assigned')]),
       'c2': ([('AGENT', 'hello'), ('KEYWORD', 'KW'), ('IDLE_END', 'IDLE')], [('ended', 'idle_timeout/assigned')]),
       'c3': ([('AGENT', 'hello'), ('AGENT_NO_RESPONSE', 'ANR'), ('IDLE_END', 'IDLE')], [('ended', 'idle_timeout/assigned')])}
report('timers across kill -9 (killed before due)', diff_run(run), exp)

def run2(n, r):
    # fired before the kill: must not fire again
    e = Env(n, 't1', r, st())
    e.agent('a1', cap=5)
    c1 = e.post('u1', 'hi').conversation.name
    time.sleep(3.8)
    reopen(e, n)
    time.sleep(5)
    return e.outs(c1), [x for x in e.evs(c1) if x[0] == 'ended']
report('fired timer not doubled across kill -9', diff_run(run2),
       ([('AGENT_NO_RESPONSE', 'ANR'), ('IDLE_END', 'IDLE')], [('ended', 'idle_timeout/assigned')]))

def run3(n, r):
    # offline reply answered the message: no ANR, also after a restart
    e = Env(n, 't1', r, st())
    e.agent('a1', cap=5)
    c1 = e.post('u1', 'hi').conversation.name
    e.send('a1', c1, 'hello')
    e.status('a1', CH.AGENT_STATUS_OFFLINE); time.sleep(0.3)
    e.post('u1', 'are you there'); time.sleep(0.5)
    reopen(e, n)
    time.sleep(4.5)
    return CH.ConversationState.Name(e.conv(c1).state), e.outs(c1)
report('offline-answered message: no ANR after kill -9', diff_run(run3),
       ('CONVERSATION_STATE_ENDED', [('AGENT', 'hello'), ('OFFLINE', 'OFF'), ('IDLE_END', 'IDLE')]))
