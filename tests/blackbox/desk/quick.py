# SPEC §6 quick replies personal & shared; idempotency; restart
from common import *
QR = admin_pb2.QuickReply
def probe(n, name, r):
    t = T(n, 'qr'+name.lower(), r)
    t.agent('a1'); t.agent('a2')
    o = {}
    L = lambda a: n.agent.ListQuickReplies(agent_pb2.ListQuickRepliesRequest(agent=t.a(a)))
    fmt = lambda q: ([(x.title, x.text) for x in q.shared], [(x.title, x.text) for x in q.personal])
    o['empty'] = fmt(L('a1'))
    n.admin.PutSharedQuickReplies(admin_pb2.PutSharedQuickRepliesRequest(tenant=t.t, replies=[QR(title='hi', text='Hello!'), QR(title='bye', text='Bye')], request_id=rid()))
    rq = rid()
    r1 = n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[QR(title='mine', text='my text')], request_id=rq))
    o['put_resp'] = fmt(r1)
    o['a1'] = fmt(L('a1')); o['a2'] = fmt(L('a2'))
    # same request id, same content -> same answer
    r2 = n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[QR(title='mine', text='my text')], request_id=rq))
    o['retry_same'] = fmt(r2) == fmt(r1)
    o['retry_diff'] = code(lambda: n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[QR(title='other', text='x')], request_id=rq)))[0]
    o['after_retry_diff'] = fmt(L('a1'))
    o['empty_text'] = code(lambda: n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[QR(title='x', text='')], request_id=rid())))[0]
    o['huge'] = code(lambda: n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[QR(title='x', text='y'*9000)], request_id=rid())))[0]
    o['many'] = code(lambda: n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[QR(title=f'x{i}', text='y') for i in range(2000)], request_id=rid())))[0]
    o['unknown_agent'] = code(lambda: L('ghost'))[0]
    o['bare_id'] = code(lambda: n.agent.ListQuickReplies(agent_pb2.ListQuickRepliesRequest(agent='a1')))
    n.restart(kill=True)
    o['restart_a1'] = fmt(L('a1'))
    # clear
    r3 = n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=t.a('a1'), replies=[], request_id=rid()))
    o['cleared'] = fmt(r3)
    return o
report(run_both(probe))
