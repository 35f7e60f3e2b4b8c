"""SPEC §4.4: end replies for idle auto-end, customer-no-response auto-end, manual end (agent
and single supervisor end), batch end; none when ended from queue or bot; channel close."""
from rlib import *

def settings(bot=False, idle=None, cnre=None):
    rp = A.ReplySettings(manual_end=T('MAN {{staff_name}}'), batch_end=T('BATCH {{nick_name}}'))
    if idle: rp.idle_end.CopyFrom(A.TimedReply(after=dur(idle), texts=['IDLE']))
    if cnre: rp.customer_no_response_end.CopyFrom(A.TimedReply(after=dur(cnre), texts=['CNRE']))
    return A.TenantSettings(transfer_to_human=bot, replies=rp)

def ends(e, c):
    return [x for x in e.evs(c) if x[0] == 'ended']

def run(n, r):
    e = Env(n, 't1', settings())
    return None

def manual(n, r):
    e = Env(n, 't1', r, settings())
    e.agent('a1', cap=2, nick='Ann'); e.agent('s1', cap=5, nick='Sue', sup=True, groups=('g9',) if False else ('g1',), online=False)
    res = {}
    c1 = e.post('u1', 'hi', nickname='Uma').conversation.name
    c2 = e.post('u2', 'hi', nickname='Vic').conversation.name
    c3 = e.post('u3', 'hi', nickname='Wes').conversation.name   # queued (cap 2)
    c4 = e.post('u4', 'hi', nickname='Xi').conversation.name    # queued
    e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c1))
    e.wait_state(c3, CH.CONVERSATION_STATE_ASSIGNED)
    n.sup.EndConversation(S.SupervisorConversationRequest(supervisor=e.a('s1'), conversation=c2))
    e.wait_state(c4, CH.CONVERSATION_STATE_ASSIGNED)
    c5 = e.post('u5', 'hi', nickname='Yan').conversation.name  # queued
    e.settle()
    br = n.sup.EndBatch(S.EndBatchRequest(supervisor=e.a('s1'), conversations=[c5, c3, c4]))
    e.settle()
    for k, c in [('agent_end', c1), ('sup_end', c2), ('batch', c3), ('batch2', c4), ('batch_queued', c5)]:
        res[k] = (e.outs(c), ends(e, c))
    res['batch_ok'] = [x.ok for x in br.results]
    c6 = e.post('u6', 'hi').conversation.name; e.settle()
    n.chan.CloseConversation(C.ConversationRequest(conversation=c6)); e.settle()
    res['channel_close'] = (e.outs(c6), ends(e, c6))
    return res

exp = {'agent_end': ([('MANUAL_END', 'MAN Ann')], [('ended', 'ended_by_agent/assigned')]),
       'sup_end': ([('MANUAL_END', 'MAN Ann')], [('ended', 'ended_by_supervisor/assigned')]),
       'batch': ([('BATCH_END', 'BATCH Wes')], [('ended', 'ended_in_batch/assigned')]),
       'batch2': ([('BATCH_END', 'BATCH Xi')], [('ended', 'ended_in_batch/assigned')]),
       'batch_queued': ([], [('ended', 'ended_in_batch/queued')]),
       'batch_ok': [True, True, True],
       'channel_close': ([], [('ended', 'channel_closed/assigned')])}
report('manual/supervisor/batch end replies', diff_run(manual), exp)

def bot(n, r):
    e = Env(n, 't1', r, settings(bot=True))
    e.agent('a1', cap=2, nick='Ann'); e.agent('s1', cap=5, sup=True, online=False)
    c1 = e.post('u1', 'hi').conversation.name
    c2 = e.post('u2', 'hi').conversation.name; e.settle()
    n.sup.EndConversation(S.SupervisorConversationRequest(supervisor=e.a('s1'), conversation=c1))
    n.sup.EndBatch(S.EndBatchRequest(supervisor=e.a('s1'), conversations=[c2])); e.settle()
    return e.outs(c1), ends(e, c1), e.outs(c2), ends(e, c2)
report('no end reply from bot', diff_run(bot), ([], [('ended', 'ended_by_supervisor/bot')], [], [('ended', 'ended_in_batch/bot')]))

def idle(n, r):
    e = Env(n, 't1', r, settings(idle=1.5))
    e.agent('a1', cap=2)
    c1 = e.post('u1', 'hi').conversation.name
    time.sleep(1.0); e.send('a1', c1, 'hey')   # activity resets idle
    time.sleep(1.0); st1 = e.conv(c1).state
    e.wait_state(c1, CH.CONVERSATION_STATE_ENDED, 10); e.settle()
    return CH.ConversationState.Name(st1), e.outs(c1), ends(e, c1)
report('idle auto-end', diff_run(idle), ('CONVERSATION_STATE_ASSIGNED', [('AGENT', 'hey'), ('IDLE_END', 'IDLE')], [('ended', 'idle_timeout/assigned')]))

def cnre(n, r):
    e = Env(n, 't1', r, settings(cnre=1.5))
    e.agent('a1', cap=2)
    c1 = e.post('u1', 'hi').conversation.name
    time.sleep(2.5); st1 = e.conv(c1).state          # no agent message yet: not ended
    e.send('a1', c1, 'hey')
    time.sleep(1.0); e.post('u1', 'wait'); time.sleep(1.0)   # customer wrote: resets
    st2 = e.conv(c1).state
    e.send('a1', c1, 'ok')
    e.wait_state(c1, CH.CONVERSATION_STATE_ENDED, 10); e.settle()
    return CH.ConversationState.Name(st1), CH.ConversationState.Name(st2), e.outs(c1), ends(e, c1)
report('customer-no-response auto-end', diff_run(cnre), ('CONVERSATION_STATE_ASSIGNED', 'CONVERSATION_STATE_ASSIGNED', [('AGENT', 'hey'), ('AGENT', 'ok'), ('CUSTOMER_NO_RESPONSE_END', 'CNRE')], [('ended', 'customer_no_response/assigned')]))

def idle_queued(n, r):
    e = Env(n, 't1', r, settings(idle=1, cnre=1))
    e.agent('a1', cap=1, online=False)
    c1 = e.post('u1', 'hi').conversation.name   # queued (nobody online): idle must not end it
    time.sleep(3)
    return CH.ConversationState.Name(e.conv(c1).state), e.outs(c1)
report('idle end not for queued', diff_run(idle_queued), ('CONVERSATION_STATE_QUEUED', []))
