# SPEC §8 supervisor changes agent status, never offline -> online; agent board; §9 agent_status_changed
from common import *
def probe(n, name, r):
    t = T(n, 'ss'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', status=0); t.agent('a2')
    ev = tenant_stream(n, t.t)
    s1 = agent_stream(n, t.a('a1')); s2 = agent_stream(n, t.a('a2'))
    SS = lambda a, st: code(lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('sup'), agent=t.a(a), status=st, request_id=rid())))
    o = {}
    o['off_to_online'] = SS('a1', S.AGENT_STATUS_ONLINE)
    o['off_to_busy'] = SS('a1', S.AGENT_STATUS_BUSY)
    o['off_to_invisible'] = SS('a1', S.AGENT_STATUS_INVISIBLE)
    o['a1_status'] = S.AgentStatus.Name(n.admin.GetAgent(admin_pb2.GetAgentRequest(name=t.a('a1'))).status)
    o['on_to_busy'] = SS('a2', S.AGENT_STATUS_BUSY)[0]
    o['busy_to_online'] = SS('a2', S.AGENT_STATUS_ONLINE)[0]
    o['on_to_away'] = SS('a2', S.AGENT_STATUS_AWAY)[0]
    o['unspec'] = SS('a2', S.AGENT_STATUS_UNSPECIFIED)[0]
    o['bad_enum'] = SS('a2', 42)[0]
    o['nonsup'] = code(lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('a2'), agent=t.a('a1'), status=S.AGENT_STATUS_BUSY, request_id=rid())))[0]
    o['unknown_agent'] = SS('ghost', S.AGENT_STATUS_BUSY)[0]
    o['to_offline'] = SS('a2', S.AGENT_STATUS_OFFLINE)[0]
    o['off_to_online2'] = SS('a2', S.AGENT_STATUS_ONLINE)[0]
    o['a2_status'] = S.AgentStatus.Name(n.admin.GetAgent(admin_pb2.GetAgentRequest(name=t.a('a2'))).status)
    time.sleep(0.5)
    sc = s2.wait(lambda e: kind(e)=='status_changed', 5, 4)
    o['a2_stream'] = [(S.AgentStatus.Name(e.status_changed.status), e.status_changed.cause) for e in s2.items if kind(e)=='status_changed']
    o['a1_stream'] = [(S.AgentStatus.Name(e.status_changed.status), e.status_changed.cause) for e in s1.items if kind(e)=='status_changed']
    ev.wait(lambda e: e.type=='agent_status_changed', 5, 4)
    o['events'] = [(e.agent, e.agent_status_changed.agent, e.agent_status_changed.from_status, e.agent_status_changed.to_status, e.agent_status_changed.cause) for e in ev.items if e.type=='agent_status_changed']
    # agent board
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    c = t.post('u1').conversation.name
    b = n.sup.GetAgentBoard(supervisor_pb2.GetAgentBoardRequest(tenant=t.t))
    o['board'] = sorted((a.name, S.AgentStatus.Name(a.status), a.load, a.HasField('first_login_today')) for a in b.agents)
    fl = {a.name: a.first_login_today.ToSeconds() for a in b.agents if a.HasField('first_login_today')}
    o['first_login_recent'] = all(abs(v - time.time()) < 120 for v in fl.values())
    # second login doesn't move first_login_today
    time.sleep(1.1)
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_OFFLINE, request_id=rid()))
    n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=t.a('a2'), status=S.AGENT_STATUS_ONLINE, request_id=rid()))
    b2 = n.sup.GetAgentBoard(supervisor_pb2.GetAgentBoardRequest(tenant=t.t))
    fl2 = {a.name: a.first_login_today.ToSeconds() for a in b2.agents if a.HasField('first_login_today')}
    o['first_login_stable'] = fl2.get(t.a('a2')) == fl.get(t.a('a2'))
    n.restart(kill=True)
    b3 = n.sup.GetAgentBoard(supervisor_pb2.GetAgentBoardRequest(tenant=t.t))
    o['board_restart'] = sorted((a.name, S.AgentStatus.Name(a.status), a.load, a.HasField('first_login_today')) for a in b3.agents)
    fl3 = {a.name: a.first_login_today.ToSeconds() for a in b3.agents if a.HasField('first_login_today')}
    o['first_login_restart_stable'] = fl3.get(t.a('a2')) == fl.get(t.a('a2'))
    return o
def expect(o):
    f = []
    if o.get('off_to_online', ['x'])[0] != 'FAILED_PRECONDITION': f.append(f"offline->online by supervisor: {o.get('off_to_online')}")
    if o.get('off_to_online2') != 'FAILED_PRECONDITION': f.append(f"offline->online (2) by supervisor: {o.get('off_to_online2')}")
    if o.get('off_to_busy', ['x'])[0] == 'OK' or o.get('a1_status') != 'AGENT_STATUS_OFFLINE': f.append(f"supervisor took agent out of offline: {o.get('off_to_busy')} {o.get('a1_status')} (proto: Never takes an offline agent out of offline)")
    if o.get('nonsup') != 'PERMISSION_DENIED': f.append('non-supervisor allowed')
    if o.get('unspec') != 'INVALID_ARGUMENT': f.append(f"UNSPECIFIED status: {o.get('unspec')}")
    return f
report(run_both(probe), expect)
