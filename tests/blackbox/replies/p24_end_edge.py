"""SPEC §4.4 edges: only manual_end configured -> batch end sends nothing; supervisor single end of a
queued conversation sends nothing; supervisor ending (batch) its own conversation; {{staff_name}}
of a dedicated agent in a queue reply."""
from rlib import *

def run(n, r):
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(manual_end=T('MAN'),
            queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q {{staff_name}}|{{nick_name}}'])]))))
    e.agent('a1', cap=1, nick='Ann'); e.agent('s1', cap=2, nick='Sue', sup=True)
    c1 = e.post('u1', 'hi').conversation.name
    c2 = e.post('u2', 'hi').conversation.name
    e.status('s1', CH.AGENT_STATUS_BUSY)
    c3 = e.post('u3', 'hi').conversation.name           # queued
    n.admin.PutCustomer(A.PutCustomerRequest(name=e.u('u4'), dedicated_agent=e.a('a1'), nickname='Dee'))
    c4 = e.post('u4', 'hi').conversation.name           # queued, pinned to a1 (online, full)
    e.settle()
    res = {'queued_dedicated': e.outs(c4), 'queued_plain': e.outs(c3)}
    who = {e.conv(c).agent.split('/')[-1]: c for c in (c1, c2)}
    n.sup.EndConversation(S.SupervisorConversationRequest(supervisor=e.a('s1'), conversation=c3)); e.settle()
    res['sup_end_queued'] = (e.outs(c3), [x for x in e.evs(c3) if x[0] == 'ended'])
    n.sup.EndBatch(S.EndBatchRequest(supervisor=e.a('s1'), conversations=[who['a1'], who['s1']])); e.settle()
    res['batch_a1'] = (e.outs(who['a1']), [x for x in e.evs(who['a1']) if x[0] == 'ended'])
    res['batch_own'] = (e.outs(who['s1']), [x for x in e.evs(who['s1']) if x[0] == 'ended'])
    return res
report('end edges', diff_run(run), {
    'queued_dedicated': [('QUEUE', 'Q Ann|Dee')], 'queued_plain': [('QUEUE', 'Q |')],
    'sup_end_queued': ([('QUEUE', 'Q |')], [('ended', 'ended_by_supervisor/queued')]),
    'batch_a1': ([], [('ended', 'ended_in_batch/assigned')]),
    'batch_own': ([], [('ended', 'ended_in_batch/assigned')])})
