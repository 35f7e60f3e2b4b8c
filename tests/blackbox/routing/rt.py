"""Shared helpers for routing probes. Usage: from rt import *"""
import os, sys, time, uuid
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from node import *
import grpc
from google.protobuf import duration_pb2, field_mask_pb2

ROUTINGS = {'tenant_actor': admin_pb2.TENANT_ROUTING_TENANT_ACTOR, 'actors': admin_pb2.TENANT_ROUTING_ACTORS}
S = common_pb2
ST = {v: k for k, v in common_pb2.ConversationState.items()}
AS = {v: k for k, v in common_pb2.AgentStatus.items()}

def rid(): return uuid.uuid4().hex

def dur(s): 
    d = duration_pb2.Duration(); d.FromMilliseconds(int(s * 1000)); return d

class T:
    """A tenant on a node."""
    def __init__(self, n, tid, routing, **settings):
        self.n = n; self.t = tid
        st = admin_pb2.TenantSettings(**settings)
        n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id=tid, routing=routing, settings=st, request_id=rid()))
    def g(self, g): return f'tenants/{self.t}/groups/{g}'
    def a(self, a): return f'tenants/{self.t}/agents/{a}'
    def c(self, c): return f'tenants/{self.t}/customers/{c}'
    def group(self, g, **policy):
        return self.n.admin.PutGroup(admin_pb2.PutGroupRequest(name=self.g(g), policy=admin_pb2.RoutingPolicy(**policy), request_id=rid()))
    def agent(self, a, groups, cap=1, status=None, **kw):
        r = self.n.admin.PutAgent(admin_pb2.PutAgentRequest(name=self.a(a), capacity=cap, groups=[self.g(x) for x in groups], request_id=rid(), **kw))
        if status: self.status(a, status)
        return r
    def status(self, a, st):
        return self.n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=self.a(a), status=st, request_id=rid()))
    def post(self, cust, text='hi', group='g1', priority=0, channel=S.CHANNEL_WEB):
        return self.n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=self.c(cust), channel=channel, text=text,
            group=self.g(group) if group else '', priority=priority, request_id=rid())).conversation
    def conv(self, name):
        return self.n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=name))
    def getagent(self, a):
        return self.n.admin.GetAgent(admin_pb2.GetAgentRequest(name=self.a(a)))
    def accept(self, a, c): return self.n.agent.Accept(agent_pb2.AgentConversationRequest(agent=self.a(a), conversation=c, request_id=rid()))
    def decline(self, a, c): return self.n.agent.Decline(agent_pb2.AgentConversationRequest(agent=self.a(a), conversation=c, request_id=rid()))
    def pick(self, a, c): return self.n.agent.Pick(agent_pb2.AgentConversationRequest(agent=self.a(a), conversation=c, request_id=rid()))
    def end(self, a, c): return self.n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=self.a(a), conversation=c, request_id=rid()))
    def unaccepted(self, a): return list(self.n.agent.ListUnaccepted(agent_pb2.ListAgentConversationsRequest(agent=self.a(a))).conversations)
    def assigned(self, a): return list(self.n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=self.a(a))).conversations)

def short(c):
    return f"{c.name.split('/')[-1]} {ST[c.state]} agent={c.agent.split('/')[-1]} pos={c.position} disp={c.position_display!r} group={c.group.split('/')[-1]}"

def wait_for(fn, timeout=15, interval=0.1):
    end = time.time() + timeout; last = None
    while time.time() < end:
        last = fn()
        if last: return last
        time.sleep(interval)
    return last

def err(fn):
    try:
        fn(); return None
    except grpc.RpcError as e:
        return (e.code().name, e.details())

def both(probe):
    """Run probe(n, routing_name, routing_enum) on a fresh node per routing; returns dict of results."""
    out = {}
    for name, r in ROUTINGS.items():
        with Node() as n:
            out[name] = probe(n, name, r)
    return out

class Obs:
    """Observation log with conversation-name normalisation."""
    def __init__(self): self.lines = []; self.labels = {}
    def lab(self, name, label=None):
        if label: self.labels[name] = label
        return self.labels.get(name, name)
    def c(self, c):
        if not c.name: return '<none>'
        return f"{self.lab(c.name)}:{ST[c.state].replace('CONVERSATION_STATE_','')} agent={c.agent.split('/')[-1]} pos={c.position}/{c.position_display} grp={c.group.split('/')[-1]} prio={c.priority}"
    def __call__(self, *parts):
        s = ' '.join(str(p) for p in parts)
        for k in sorted(self.labels, key=len, reverse=True): s = s.replace(k, self.labels[k])
        self.lines.append(s)

def compare(probe, verbose=True):
    """probe(n, t_routing_enum, obs) ; runs on both routings, prints observations side by side and diffs."""
    res = {}
    for name, r in ROUTINGS.items():
        o = Obs()
        with Node() as n:
            try:
                probe(n, r, o)
            except Exception as e:
                import traceback; o('EXCEPTION', repr(e)[:400])
        res[name] = o.lines
    a, b = res['tenant_actor'], res['actors']
    same = a == b
    if verbose:
        for i in range(max(len(a), len(b))):
            x = a[i] if i < len(a) else ''; y = b[i] if i < len(b) else ''
            mark = '  ' if x == y else '!!'
            print(f"{mark} TA: {x}")
            if x != y: print(f"{mark} AC: {y}")
    print('ROUTINGS AGREE' if same else 'ROUTINGS DIVERGE')
    return res
