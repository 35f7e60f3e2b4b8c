"""Ambiguous: SPEC §4.2 "a minimum interval between two queue replies to the same customer":
the interval is kept per conversation, so a customer whose conversation ended and who writes again
within the interval gets another queue reply at once."""
from rlib import *

def run(n, r):
    q = A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q'])], min_interval=dur(60))
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(queue=q)))
    e.agent('a1', cap=1)
    e.post('u0', 'x')
    c1 = e.post('u1', 'hi').conversation.name; e.settle()
    n.chan.CloseConversation(C.ConversationRequest(conversation=c1)); e.settle()
    c2 = e.post('u1', 'hi again').conversation.name; e.settle()
    return len([k for k, _ in e.outs() if k == 'QUEUE'])
report('queue interval per customer [ambiguous]', diff_run(run), 1)
