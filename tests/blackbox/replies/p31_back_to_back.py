"""A customer's second message right behind the opening one (same PostMessages stream, before the
router answered): it gets the same replies as on the tenant actor (queue / offline / MR)."""
from rlib import *

def run(n, r, online):
    st = A.TenantSettings(replies=A.ReplySettings(
        queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q{{queue_num}}'])]),
        offline=A.OfflineReply(texts=['OFF']),
        auto_accept=A.AutoAcceptReply(texts=['AA'])),
        message_received=A.MessageReceivedReply(texts=['MR']))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=1, online=online)
    if online: e.post('u0', 'x')
    res = []
    for k in range(5):
        reqs = [C.PostMessageRequest(customer=e.u(f'u{k}x'), channel=CH.CHANNEL_WEB, text=f'm{i}', request_id=f'{k}-{i}') for i in range(3)]
        list(n.chan.PostMessages(iter(reqs)))
    e.settle(1)
    for k in range(5):
        c = n.admin.GetCustomer(A.GetCustomerRequest(name=e.u(f'u{k}x'))).open_conversation
        res.append(e.outs(c))
    return res
Q = lambda p: [('MESSAGE_RECEIVED', 'MR'), ('QUEUE', f'Q{p}')] * 3
report('back-to-back messages, agent full', diff_run(lambda n, r: run(n, r, True)), [Q(p) for p in range(1, 6)])
O = [('MESSAGE_RECEIVED', 'MR'), ('OFFLINE', 'OFF')] * 3
report('back-to-back messages, all offline', diff_run(lambda n, r: run(n, r, False)), [O] * 5)
