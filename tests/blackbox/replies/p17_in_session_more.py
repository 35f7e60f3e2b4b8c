"""SPEC §4.3/§5: thresholds follow the agent level (after transfer to another agent); CNR reply
once per silence; CNR reply then CNR auto-end; idle-end only when enabled."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(
        agent_no_response=A.TimedReply(after=dur(30), texts=['T-ANR']),
        customer_no_response=A.TimedReply(after=dur(1), texts=['CNR']),
        customer_no_response_end=A.TimedReply(after=dur(3), texts=['CNR-END'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=3, nick='Ann')
    e.agent('b1', cap=3, nick='Bob', replies=A.ReplySettings(agent_no_response=A.TimedReply(after=dur(1), texts=['B-ANR {{staff_name}}'])))
    e.status('b1', CH.AGENT_STATUS_BUSY)
    c = e.post('u1', 'hi').conversation.name; e.settle()
    a = e.conv(c).agent
    n.agent.Transfer(AG.TransferRequest(agent=a, conversation=c, to_agent=e.a('b1'))); e.settle()
    time.sleep(2)  # customer still unanswered: b1's 1 s threshold
    r1 = e.outs(c)
    e.send('b1', c, 'hello')
    ok = e.wait_state(c, CH.CONVERSATION_STATE_ENDED, 10); e.settle()
    return r1, e.outs(c)[len(r1):], [x for x in e.evs(c) if x[0] == 'ended']
report('agent-level threshold after transfer; CNR then CNR-end', diff_run(run),
       ([('AGENT_NO_RESPONSE', 'B-ANR Bob')], [('AGENT', 'hello'), ('CUSTOMER_NO_RESPONSE', 'CNR'), ('CUSTOMER_NO_RESPONSE_END', 'CNR-END')], [('ended', 'customer_no_response/assigned')]))
