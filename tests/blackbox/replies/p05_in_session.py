"""SPEC §4.3: agent-no-response / customer-no-response replies; not in queue or bot; not after
keyword or offline reply for the same message."""
from rlib import *

def settings(bot=False):
    return A.TenantSettings(transfer_to_human=bot, offline_grace=dur(3600),
        replies=A.ReplySettings(
            agent_no_response=A.TimedReply(after=dur(1), texts=['ANR {{staff_name}}']),
            customer_no_response=A.TimedReply(after=dur(1), texts=['CNR {{nick_name}}']),
            offline=A.OfflineReply(texts=['OFF'])),
        keywords=[A.KeywordRule(keywords=['price'], texts=['KW'])])

def run(n, r):
    e = Env(n, 't1', r, settings())
    e.agent('a1', cap=1, nick='Ann')
    res = {}
    c = e.post('u1', 'hi', nickname='Uma').conversation.name
    time.sleep(2.5); res['anr'] = e.outs(c)
    e.send('a1', c, 'hello'); time.sleep(2.5); res['cnr'] = e.outs(c)
    e.post('u1', 'one'); time.sleep(0.4); e.post('u1', 'two'); time.sleep(2.5); res['anr2'] = e.outs(c)
    e.send('a1', c, 'sure')
    e.post('u1', 'what price?'); time.sleep(2.5); res['kw'] = e.outs(c)
    # queued conversation: no in-session replies
    q = e.post('u2', 'hi').conversation.name; time.sleep(2.5); res['queued'] = e.outs(q)
    # agent offline (grace): offline reply, no ANR
    e.send('a1', c, 'back'); time.sleep(0.2)
    e.status('a1', CH.AGENT_STATUS_OFFLINE); time.sleep(0.3)
    e.post('u1', 'hello?'); time.sleep(2.5); res['offline'] = e.outs(c)[len(res['kw']) + 1:]
    return res

exp = {'anr': [('AGENT_NO_RESPONSE', 'ANR Ann')],
       'cnr': [('AGENT_NO_RESPONSE', 'ANR Ann'), ('AGENT', 'hello'), ('CUSTOMER_NO_RESPONSE', 'CNR Uma')],
       'anr2': [('AGENT_NO_RESPONSE', 'ANR Ann'), ('AGENT', 'hello'), ('CUSTOMER_NO_RESPONSE', 'CNR Uma'), ('AGENT_NO_RESPONSE', 'ANR Ann')],
       'kw': [('AGENT_NO_RESPONSE', 'ANR Ann'), ('AGENT', 'hello'), ('CUSTOMER_NO_RESPONSE', 'CNR Uma'), ('AGENT_NO_RESPONSE', 'ANR Ann'), ('AGENT', 'sure'), ('KEYWORD', 'KW')],
       'queued': [], 'offline': [('OFFLINE', 'OFF')]}
report('in-session replies', diff_run(run), exp)

def bot(n, r):
    e = Env(n, 't1', r, settings(bot=True))
    e.agent('a1', cap=1, nick='Ann')
    c = e.post('u1', 'hi').conversation.name
    time.sleep(2.5)
    return CH.ConversationState.Name(e.conv(c).state), e.outs(c)
report('no in-session replies in bot', diff_run(bot), ('CONVERSATION_STATE_BOT', []))
