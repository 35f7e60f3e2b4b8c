# Supervisor status changes: never offline -> anything else; other changes allowed; events/cause.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=1)
    t.agent('sup', ['g1'], cap=1, supervisor=True)
    t.agent('nosup', ['g1'], cap=1)
    SS = lambda st, who='sup', a='a1': err(lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a(who), agent=t.a(a), status=st, request_id=rid())))
    for st in [S.AGENT_STATUS_ONLINE, S.AGENT_STATUS_BUSY, S.AGENT_STATUS_AWAY, S.AGENT_STATUS_INVISIBLE, S.AGENT_STATUS_OFFLINE]:
        o('offline ->', AS[st], SS(st), AS[t.getagent('a1').status])
    o('sup offline -> offline (noop)', SS(S.AGENT_STATUS_OFFLINE))
    t.status('a1', S.AGENT_STATUS_AWAY)
    for st in [S.AGENT_STATUS_ONLINE, S.AGENT_STATUS_BUSY, S.AGENT_STATUS_INVISIBLE, S.AGENT_STATUS_OFFLINE]:
        o('from signed in ->', AS[st], SS(st), AS[t.getagent('a1').status])
    o('unspecified', SS(S.AGENT_STATUS_UNSPECIFIED))
    o('agent unspecified', err(lambda: t.status('a1', S.AGENT_STATUS_UNSPECIFIED)))
    o('agent bad enum', err(lambda: t.status('a1', 99)))
    o('nosup', SS(S.AGENT_STATUS_BUSY, who='nosup'))
    o('unknown agent', SS(S.AGENT_STATUS_BUSY, a='zz'))
    o('agent self unknown', err(lambda: t.status('zz', S.AGENT_STATUS_ONLINE)))
    o('bare id', err(lambda: n.agent.SetStatus(agent_pb2.SetStatusRequest(agent='a1', status=S.AGENT_STATUS_ONLINE, request_id=rid()))))
    # supervisor sets online agent to offline; conversation handling as per policy
    t.status('a1', S.AGENT_STATUS_ONLINE)
    c = t.post('u1'); o.lab(c.name, 'c1')
    o('sup -> offline with conv', SS(S.AGENT_STATUS_OFFLINE), o.c(t.conv(c.name)))
compare(probe)
