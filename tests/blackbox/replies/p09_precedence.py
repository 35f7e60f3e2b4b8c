"""SPEC §4: precedence agent > skill group > channel > tenant per kind (manual_end, auto_accept,
agent_no_response); channel level only for its channel; UpdateAgentReplies mask semantics."""
from rlib import *

def levels_run(levels, channel=CH.CHANNEL_WEB):
    def run(n, r):
        def rs(tag):
            return A.ReplySettings(manual_end=T(f'{tag}-END'),
                                   auto_accept=A.AutoAcceptReply(texts=[f'{tag}-AA']),
                                   agent_no_response=A.TimedReply(after=dur(1), texts=[f'{tag}-ANR']))
        st = A.TenantSettings(replies=rs('T') if 'T' in levels else None,
                              channels=[A.ChannelSettings(channel=CH.CHANNEL_WEB, replies=rs('C'))] if 'C' in levels else [])
        e = Env(n, 't1', r, st, group_replies={'g1': rs('G')} if 'G' in levels else None)
        e.agent('a1', cap=2, replies=rs('A') if 'A' in levels else None)
        c = e.post('u1', 'hi', channel=channel).conversation.name
        time.sleep(1.8)
        n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c)); e.settle()
        return [t for _, t in e.outs(c)]
    return run

ok = True
for lv, exp in [('AGCT', 'A'), ('GCT', 'G'), ('CT', 'C'), ('T', 'T'), ('AT', 'A'), ('GT', 'G')]:
    ok &= report(f'precedence levels={lv}', diff_run(levels_run(lv)), [f'{exp}-AA', f'{exp}-ANR', f'{exp}-END'])
ok &= report('channel level not for other channel', diff_run(levels_run('CT', CH.CHANNEL_APP)), ['T-AA', 'T-ANR', 'T-END'])

def agent_self(n, r):
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(manual_end=T('T-END'), batch_end=T('T-BATCH'))))
    e.agent('a1', cap=5)
    e.agent('s1', cap=5, sup=True, online=False)
    n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent=e.a('a1'),
        replies=A.ReplySettings(manual_end=T('A-END'), batch_end=T('A-BATCH'))))
    c1 = e.post('u1', 'hi').conversation.name; e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c1))
    # unset manual_end with a mask naming it: defers to tenant again; batch_end kept
    n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent=e.a('a1'),
        update_mask=field_mask_pb2.FieldMask(paths=['manual_end'])))
    c2 = e.post('u2', 'hi').conversation.name; c3 = e.post('u3', 'hi').conversation.name; e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c2))
    n.sup.EndBatch(S.EndBatchRequest(supervisor=e.a('s1'), conversations=[c3])); e.settle()
    return [t for _, t in e.outs(c1)], [t for _, t in e.outs(c2)], [t for _, t in e.outs(c3)]
report('UpdateAgentReplies', diff_run(agent_self), (['A-END'], ['T-END'], ['A-BATCH']))
