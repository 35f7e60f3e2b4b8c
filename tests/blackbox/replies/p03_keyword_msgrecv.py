"""SPEC §4: keyword reply replaces message-received; keyword/offline suppress queue reply;
message-received in session only with also_in_session."""
from rlib import *

def probe(also_in_session):
    def run(n, r):
        st = A.TenantSettings(
            replies=A.ReplySettings(queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q{{queue_num}}'])])),
            keywords=[A.KeywordRule(keywords=['refund', '退款'], texts=['KW {{nick_name}}'])],
            message_received=A.MessageReceivedReply(texts=['MR'], also_in_session=also_in_session))
        e = Env(n, 't1', r, st)
        e.agent('a1', cap=1)
        c0 = e.post('u0', 'hello', nickname='Zed').conversation.name   # assigned
        e.post('u0', 'REFUND please')
        e.post('u0', 'ok')
        c1 = e.post('u1', 'hello').conversation.name   # queued
        e.post('u1', '我要退款')
        e.post('u1', 'plain')
        e.settle()
        return e.outs(c0), e.outs(c1)
    return run

report('keyword/msg-received also_in_session=False', diff_run(probe(False)),
       ([('KEYWORD', 'KW Zed')], [('MESSAGE_RECEIVED', 'MR'), ('QUEUE', 'Q1'), ('KEYWORD', 'KW '), ('MESSAGE_RECEIVED', 'MR'), ('QUEUE', 'Q1')]))
report('keyword/msg-received also_in_session=True', diff_run(probe(True)),
       ([('MESSAGE_RECEIVED', 'MR'), ('KEYWORD', 'KW Zed'), ('MESSAGE_RECEIVED', 'MR')], [('MESSAGE_RECEIVED', 'MR'), ('QUEUE', 'Q1'), ('KEYWORD', 'KW '), ('MESSAGE_RECEIVED', 'MR'), ('QUEUE', 'Q1')]))
