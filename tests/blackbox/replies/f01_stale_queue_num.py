"""FINDING: queue reply's {{queue_num}} and rule choice must use the live position (SPEC §4
placeholders: "{{queue_num}} (live queue position)"). Customer u3 waits at position 3, two
conversations ahead leave the queue, u3 writes: expected rule/position for position 1."""
from rlib import *

def run(n, r):
    q = A.QueueReply(rules=[A.QueueRule(above=0, texts=['low {{queue_num}}']),
                            A.QueueRule(above=2, texts=['high {{queue_num}}'])])
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(queue=q)))
    e.agent('a1', cap=1)
    c0 = e.post('u0', 'x').conversation.name
    c = [e.post(f'u{i}', 'hi').conversation.name for i in (1, 2, 3)]
    e.settle()
    # the first two waiting leave the queue (closed by the channel)
    for x in c[:2]:
        n.chan.CloseConversation(C.ConversationRequest(conversation=x))
    e.settle(2.0)
    pos = e.conv(c[2]).position
    e.post('u3', 'where am I?'); e.settle(1.0)
    e.post('u3', 'and now?'); e.settle(1.0)
    return pos, e.outs(c[2])

exp = (1, [('QUEUE', 'high 3'), ('QUEUE', 'low 1'), ('QUEUE', 'low 1')])
report('queue reply uses live position', diff_run(run), exp)
