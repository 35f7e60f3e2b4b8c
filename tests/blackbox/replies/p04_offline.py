"""SPEC §4.5: offline reply in its four cases, precedence agent > group > tenant, replaces queue reply."""
from rlib import *
OFF = lambda t, iv=0: A.ReplySettings(offline=A.OfflineReply(texts=[t], min_interval=dur(iv)))

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(
        offline=A.OfflineReply(texts=['T-OFF {{staff_name}}']),
        queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q{{queue_num}}'])])),
        offline_grace=dur(3600))
    e = Env(n, 't1', r, st, groups=('g1', 'g2', 'g3'),
            group_replies={'g1': OFF('G1-OFF {{staff_name}}')})
    e.agent('a1', groups=('g1',), cap=1, nick='Ann', replies=OFF('A1-OFF {{staff_name}}'), online=False)
    e.agent('a2', groups=('g1',), cap=1, nick='Bea', online=False)
    e.agent('a3', groups=('g3',), cap=1, nick='Cid', online=False)
    res = {}
    # (1) everyone offline: queued in g1 -> group reply (staff empty)
    c = e.post('u1', 'hi', group=e.g('g1')).conversation.name; e.settle()
    res['all_off_g1'] = e.outs(c)
    # (2) queued in g2 (no members, no group reply) -> tenant reply
    c = e.post('u2', 'hi', group=e.g('g2')).conversation.name; e.settle()
    res['g2_no_members'] = e.outs(c)
    # a3 online (g3). g1's agents still offline -> g1 queued conv gets group reply again
    e.status('a3', CH.AGENT_STATUS_ONLINE); e.settle(0.3)
    e.post('u1', 'still there?'); e.settle()
    res['g1_all_off_tenant_not'] = e.outs(c_u1 := e.conv(n.admin.GetCustomer(A.GetCustomerRequest(name=e.u('u1'))).open_conversation).name)
    # (3) dedicated: a2 online with capacity 1 taken; u4 dedicated to a1 (offline)
    e.status('a2', CH.AGENT_STATUS_ONLINE); e.settle(0.5)  # a2 takes u1's conv
    n.admin.PutCustomer(A.PutCustomerRequest(name=e.u('u4'), dedicated_agent=e.a('a1')))
    c = e.post('u4', 'hi', group=e.g('g1')).conversation.name; e.settle()
    res['dedicated_off'] = (CH.ConversationState.Name(e.conv(c).state), e.outs(c))
    # u5 (no dedicated) queued in g1 where a2 is online but full -> queue reply, no offline
    c = e.post('u5', 'hi', group=e.g('g1')).conversation.name; e.settle()
    res['group_has_online'] = e.outs(c)
    # (4) assigned conversation whose agent goes offline (grace 1h keeps it assigned)
    e.status('a2', CH.AGENT_STATUS_OFFLINE); e.settle(0.5)
    e.post('u1', 'hello?'); e.settle()
    res['assigned_agent_off'] = (CH.ConversationState.Name(e.conv(c_u1).state), e.outs(c_u1))
    # away agent is not offline
    return res

report('offline reply cases', diff_run(run))
