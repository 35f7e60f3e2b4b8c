"""SPEC §4.1: auto-accept reply on immediate assignment; from the queue only with also_from_queue."""
from rlib import *

def probe(also):
    def run(n, r):
        st = A.TenantSettings(replies=A.ReplySettings(
            auto_accept=A.AutoAcceptReply(texts=['hi {{nick_name}}, {{staff_name}} here'], also_from_queue=also)))
        e = Env(n, 't1', r, st)
        e.agent('a1', cap=1, nick='Alice')
        c1 = e.post('u1', 'hello', nickname='Bob').conversation.name
        c2 = e.post('u2', 'hello2', nickname='Carl').conversation.name
        e.settle()
        n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c1))
        e.wait_state(c2, CH.CONVERSATION_STATE_ASSIGNED)
        e.settle()
        return e.outs(c1), e.outs(c2), e.evs(c2)
    return run

ok = report('auto-accept also_from_queue=False', diff_run(probe(False)))
ok &= report('auto-accept also_from_queue=True', diff_run(probe(True)))
