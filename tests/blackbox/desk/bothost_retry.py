# request_id retry of supervisor SetBotHosting (all / agent / list) returns the first answer and acts once
from common import *
def probe(n, name, r):
    t = T(n, 'br'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10)
    cs = [t.post(f'u{i}').conversation.name for i in range(3)]
    o = {}
    X = rid()
    SB = lambda rq, **kw: n.sup.SetBotHosting(supervisor_pb2.SetBotHostingRequest(supervisor=t.a('sup'), request_id=rq, **kw)).changed
    o['first'] = SB(X, all=True, on=True)
    o['retry'] = SB(X, all=True, on=True)
    c4 = t.post('u4').conversation.name
    o['retry_after_new_conv'] = SB(X, all=True, on=True)
    o['c4_hosted_after_retry'] = t.conv(c4).bot_hosting
    Y = rid()
    o['agent_first'] = SB(Y, agent=t.a('a1'), on=False)
    o['agent_retry'] = SB(Y, agent=t.a('a1'), on=False)
    # reuse Y with a different selection/flag
    o['reuse_diff'] = code(lambda: SB(Y, all=True, on=True))
    o['flags_after_reuse'] = [t.conv(c).bot_hosting for c in cs + [c4]]
    n.restart(kill=True)
    o['agent_retry_after_restart'] = SB(Y, agent=t.a('a1'), on=False)
    o['flags_after_restart'] = [t.conv(c).bot_hosting for c in cs + [c4]]
    return o
def expect(o):
    f = []
    if o['retry'] != o['first']: f.append(f"retry answered {o['retry']} not {o['first']}")
    if o['retry_after_new_conv'] != o['first']: f.append(f"retry after new conv answered {o['retry_after_new_conv']} not {o['first']}")
    if o['c4_hosted_after_retry']: f.append('retry acted again (new conversation switched on)')
    if o['agent_retry'] != o['agent_first']: f.append(f"agent retry {o['agent_retry']} vs {o['agent_first']}")
    if o['agent_retry_after_restart'] != o['agent_first']: f.append(f"retry after restart {o['agent_retry_after_restart']} vs {o['agent_first']}")
    if o['reuse_diff'][0] == 'OK' and any(o['flags_after_reuse']): f.append('reused id with different content acted')
    return f
report(run_both(probe), expect)
