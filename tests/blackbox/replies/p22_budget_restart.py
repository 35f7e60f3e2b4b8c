"""Channel budget count and the once-per-silence CNR reply survive a kill -9 restart."""
from rlib import *

def run(n, r):
    st = A.TenantSettings(replies=A.ReplySettings(
        auto_accept=A.AutoAcceptReply(texts=[f'aa{i}' for i in range(6)]),
        customer_no_response=A.TimedReply(after=dur(1), texts=['CNR'])))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi', channel=CH.CHANNEL_MINI_PROGRAM).conversation.name; e.settle()
    c2 = e.post('u2', 'hi').conversation.name; e.settle()
    e.send('a1', c2, 'hello'); time.sleep(1.8)
    e.close(); n.restart(kill=True)
    e.out = Collector(n, 't1', 'out'); e.ev = Collector(n, 't1', 'ev'); time.sleep(2)
    res = []
    for i in range(2):
        try: e.send('a1', c, f'h{i}'); res.append('ok')
        except grpc.RpcError as x: res.append(x.code().name)
    return len(e.outs(c)), res, e.outs(c2)
report('budget + CNR across kill -9', diff_run(run),
       (5, ['ok', 'RESOURCE_EXHAUSTED'], [('AUTO_ACCEPT', 'aa0'), ('AUTO_ACCEPT', 'aa1'), ('AUTO_ACCEPT', 'aa2'), ('AUTO_ACCEPT', 'aa3'), ('AUTO_ACCEPT', 'aa4'), ('AUTO_ACCEPT', 'aa5'), ('AGENT', 'hello'), ('CUSTOMER_NO_RESPONSE', 'CNR')]))
