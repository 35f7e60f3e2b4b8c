"""Placeholders: {{nick_name}} follows the nickname the channel reports (and PutCustomer),
{{staff_name}} follows PutAgent nickname changes, unknown placeholders kept, no re-expansion of
values."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(message_received=A.MessageReceivedReply(texts=['[{{nick_name}}|{{staff_name}}|{{queue_num}}|{{other}}]'], also_in_session=True))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=1, nick='Ann')
    c = e.post('u1', 'hi').conversation.name
    e.post('u1', 'hi', nickname='Bo{{staff_name}}')
    n.admin.PutAgent(A.PutAgentRequest(name=e.a('a1'), nickname='Annie')); e.settle(0.5)
    e.post('u1', 'hi')
    n.admin.PutCustomer(A.PutCustomerRequest(name=e.u('u1'), nickname='Cy')); e.settle(0.5)
    e.post('u1', 'hi')
    q = e.post('u2', 'hi', nickname='Dee').conversation.name
    e.settle()
    return e.outs(c), e.outs(q)
report('placeholders', diff_run(run), ([('MESSAGE_RECEIVED', '[|Ann||{{other}}]'), ('MESSAGE_RECEIVED', '[Bo{{staff_name}}|Ann||{{other}}]'),
                                        ('MESSAGE_RECEIVED', '[Bo{{staff_name}}|Annie||{{other}}]'), ('MESSAGE_RECEIVED', '[Cy|Annie||{{other}}]')],
                                       [('MESSAGE_RECEIVED', '[Dee||1|{{other}}]')]))
