"""Ambiguous: in-session replies while bot hosting (托管) is on. SPEC §4.3 says "Not sent for
conversations in the queue or with the bot"; a hosted conversation is with the bot."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(
        agent_no_response=A.TimedReply(after=dur(1), texts=['ANR']),
        customer_no_response=A.TimedReply(after=dur(1), texts=['CNR'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name; e.settle(0.2)
    e.send('a1', c, 'hello')
    n.agent.SetBotHosting(AG.AgentBotHostingRequest(agent=e.a('a1'), conversation=c, on=True))
    time.sleep(1.8)
    e.post('u1', 'question'); time.sleep(1.8)
    return e.outs(c)
report('no in-session replies while bot hosting [ambiguous]', diff_run(run), [('AGENT', 'hello')])
