import os, sys, time, threading, queue, uuid, traceback
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from node import *
import grpc
from google.protobuf import field_mask_pb2, duration_pb2, timestamp_pb2

ROUTINGS = {'TA': admin_pb2.TENANT_ROUTING_TENANT_ACTOR, 'AC': admin_pb2.TENANT_ROUTING_ACTORS}
S = common_pb2

def rid(): return uuid.uuid4().hex

def dur(s): return duration_pb2.Duration(seconds=int(s), nanos=int((s-int(s))*1e9))

class T:
    """One tenant on a node."""
    def __init__(self, n, tid, routing, settings=None, mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, groups=('g1',), policy=None):
        self.n, self.tid = n, tid
        self.t = f'tenants/{tid}'
        st = settings or admin_pb2.TenantSettings()
        if not st.default_group: st.default_group = f'{self.t}/groups/{groups[0]}'
        # create tenant first without default_group (group must exist?) -> try
        try:
            n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id=tid, routing=routing, settings=st, request_id=rid()))
        except grpc.RpcError as e:
            st2 = admin_pb2.TenantSettings(); st2.CopyFrom(st); st2.default_group = ''
            n.admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant_id=tid, routing=routing, settings=st2, request_id=rid()))
            for g in groups: self.group(g, mode, policy)
            n.admin.UpdateTenant(admin_pb2.UpdateTenantRequest(name=self.t, settings=st, request_id=rid()))
            return
        for g in groups: self.group(g, mode, policy)

    def g(self, g): return f'{self.t}/groups/{g}'
    def a(self, a): return f'{self.t}/agents/{a}'
    def c(self, u): return f'{self.t}/customers/{u}'

    def group(self, g, mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT, policy=None):
        p = policy or admin_pb2.RoutingPolicy(offer_mode=mode)
        return self.n.admin.PutGroup(admin_pb2.PutGroupRequest(name=self.g(g), policy=p, request_id=rid()))

    def agent(self, a, groups=('g1',), cap=5, sup=False, status=S.AGENT_STATUS_ONLINE, nick=None):
        self.n.admin.PutAgent(admin_pb2.PutAgentRequest(name=self.a(a), nickname=nick or a, capacity=cap,
            groups=[self.g(x) for x in groups], supervisor=sup, request_id=rid()))
        if status:
            self.n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=self.a(a), status=status, request_id=rid()))

    def post(self, u, text='hi', ch=S.CHANNEL_WEB, **kw):
        return self.n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=self.c(u), channel=ch, text=text, request_id=rid(), **kw))

    def conv(self, c):
        return self.n.chan.GetConversation(channel_pb2.GetConversationRequest(conversation=c))

    def send(self, a, c, text='hello'):
        return self.n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=self.a(a), conversation=c, text=text, request_id=rid()))

    def hist(self, a, c):
        return list(self.n.agent.GetHistory(agent_pb2.GetHistoryRequest(agent=self.a(a), conversation=c)).messages)

    def unacc(self, a):
        return [x.name for x in self.n.agent.ListUnaccepted(agent_pb2.ListAgentConversationsRequest(agent=self.a(a))).conversations]
    def assigned(self, a):
        return [x.name for x in self.n.agent.ListAssigned(agent_pb2.ListAgentConversationsRequest(agent=self.a(a))).conversations]

class Stream:
    """Collect a server stream in a thread."""
    def __init__(self, call):
        self.call = call; self.items = []; self.err = None
        self.th = threading.Thread(target=self._run, daemon=True); self.th.start()
    def _run(self):
        try:
            for x in self.call: self.items.append(x)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED: self.err = e
    def cancel(self): self.call.cancel()
    def wait(self, pred, timeout=10, n=1):
        end = time.time() + timeout
        r = []
        while time.time() < end:
            r = [x for x in list(self.items) if pred(x)]
            if len(r) >= n: return r
            time.sleep(0.05)
        return r if n > 1 else []

def agent_stream(n, agent, after=0):
    return Stream(n.agent.StreamEvents(agent_pb2.StreamAgentEventsRequest(agent=agent, after_cursor=after)))
def tenant_stream(n, tenant, after=0):
    return Stream(n.events.StreamEvents(events_pb2.StreamEventsRequest(tenant=tenant, after_cursor=after)))

def poll(fn, timeout=10, interval=0.1):
    end = time.time() + timeout; last = None
    while time.time() < end:
        try:
            last = fn()
            if last: return last
        except grpc.RpcError as e:
            last = e
        time.sleep(interval)
    return last

def code(fn):
    try:
        fn(); return 'OK', ''
    except grpc.RpcError as e:
        return e.code().name, e.details()

def kind(ev): return ev.WhichOneof('event')

def run_both(probe, restart=False):
    """probe(n, routing_name, routing) -> dict of observations. Runs both routings on one node."""
    out = {}
    with Node() as n:
        for name, r in ROUTINGS.items():
            try:
                out[name] = probe(n, name, r)
            except Exception as e:
                traceback.print_exc()
                out[name] = {'EXC': repr(e)[:300]}
    return out

import re
def norm(v):
    if isinstance(v, str):
        v = re.sub(r'tenants/[a-z0-9_-]+', 'tenants/T', v)
        return re.sub(r'conversations/(\d+)', lambda m: 'conversations/%d' % (int(m.group(1)) % 2**52), v)
    if isinstance(v, (list, tuple)): return [norm(x) for x in v]
    if isinstance(v, dict): return {k: norm(x) for k, x in v.items()}
    return v

def report(out, expect=None):
    out = norm(out)
    """Compare TA vs AC; expect(obs)->list of failure strings per routing."""
    fails = []
    ta, ac = out.get('TA', {}), out.get('AC', {})
    for k in sorted(set(ta) | set(ac)):
        if ta.get(k) != ac.get(k):
            fails.append(f'DIVERGE {k}: TA={ta.get(k)!r} AC={ac.get(k)!r}')
    if expect:
        for name, obs in out.items():
            for f in expect(obs): fails.append(f'{name}: {f}')
    for name, obs in out.items():
        print(name, obs)
    for f in fails: print('  -', f)
    print('FAIL' if fails else 'PASS')
    return not fails
