"""SPEC §4.2: queue reply rules 'position > N' (largest exceeded wins), {{queue_num}}, min interval."""
from rlib import *

def run(n, r):
    q = A.QueueReply(rules=[A.QueueRule(above=0, texts=['A{{queue_num}}']),
                            A.QueueRule(above=4, texts=['C{{queue_num}}']),
                            A.QueueRule(above=2, texts=['B{{queue_num}}'])],
                     min_interval=dur(2))
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(queue=q)))
    e.agent('a1', cap=1)
    c0 = e.post('u0', 'x').conversation.name
    convs = []
    for i in range(1, 7):
        convs.append(e.post(f'u{i}', 'first').conversation.name)
    e.settle()
    first = [e.outs(c) for c in convs]
    # second message within the min interval: nothing
    e.post('u6', 'again')
    e.settle(0.5)
    within = e.outs(convs[-1])
    time.sleep(2.0)
    e.post('u6', 'later')
    e.settle()
    after = e.outs(convs[-1])
    # positions change as others leave: end c0 -> u1 assigned; u6 now position 5
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c0))
    e.wait_state(convs[0], CH.CONVERSATION_STATE_ASSIGNED)
    time.sleep(2.1)
    e.post('u6', 'pos5?')
    e.settle()
    moved = e.outs(convs[-1])
    pos = e.conv(convs[-1]).position
    return first, within, after, moved, pos

exp = ([[('QUEUE', 'A1')], [('QUEUE', 'A2')], [('QUEUE', 'B3')], [('QUEUE', 'B4')], [('QUEUE', 'C5')], [('QUEUE', 'C6')]],
       [('QUEUE', 'C6')], [('QUEUE', 'C6'), ('QUEUE', 'C6')], [('QUEUE', 'C6'), ('QUEUE', 'C6'), ('QUEUE', 'C5')], 5)
report('queue reply rules/interval/queue_num', diff_run(run), exp)

def six(n, r):
    n.admin.CreateTenant(A.CreateTenantRequest(tenant_id='t1', routing=r))
    q = A.QueueReply(rules=[A.QueueRule(above=i, texts=['x']) for i in range(6)])
    try:
        n.admin.UpdateTenant(A.UpdateTenantRequest(name='tenants/t1', settings=A.TenantSettings(replies=A.ReplySettings(queue=q)),
                              update_mask=field_mask_pb2.FieldMask(paths=['settings.replies'])))
        return 'accepted'
    except grpc.RpcError as e:
        return e.code().name
report('six queue rules refused', diff_run(six), 'INVALID_ARGUMENT')
