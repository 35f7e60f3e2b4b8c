"""Shared helpers for the reply/timer probes (black-box; only gRPC)."""
import os, sys, time, threading, re, json
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from node import *  # noqa
from google.protobuf import duration_pb2, field_mask_pb2
import grpc

A, C, CH, E, S = admin_pb2, channel_pb2, common_pb2, events_pb2, supervisor_pb2
AG = agent_pb2
ROUTINGS = [('TENANT_ACTOR', admin_pb2.TENANT_ROUTING_TENANT_ACTOR),
            ('ACTORS', admin_pb2.TENANT_ROUTING_ACTORS)]
KIND = {v: k for k, v in common_pb2.ReplyKind.items()}


def dur(s):
    d = duration_pb2.Duration(); d.FromNanoseconds(int(s * 1e9)); return d


def T(*texts):
    return A.Texts(texts=list(texts))


class Collector:
    """Streams a tenant's outbound messages or events into a list."""
    def __init__(self, n, tenant, kind='out'):
        self.items = []; self.lock = threading.Lock(); self.err = None
        if kind == 'out':
            self.call = n.chan.StreamOutbound(C.StreamOutboundRequest(tenant='tenants/' + tenant))
        else:
            self.call = n.events.StreamEvents(E.StreamEventsRequest(tenant='tenants/' + tenant))
        self.t = threading.Thread(target=self._run, daemon=True); self.t.start()

    def _run(self):
        try:
            for m in self.call:
                with self.lock: self.items.append(m)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED: self.err = e

    def snap(self):
        with self.lock: return list(self.items)

    def wait(self, pred, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            if pred(self.snap()): return True
            time.sleep(0.05)
        return False

    def close(self):
        self.call.cancel()


def out_summary(items, conv_ids=None):
    """(kind, text) list; agent messages as ('AGENT', text)."""
    res = []
    for m in items:
        k = KIND[m.reply_kind] if m.reply_kind else ('AGENT' if m.agent else '?')
        res.append((k.replace('REPLY_KIND_', ''), m.text))
    return res


def ev_summary(items):
    res = []
    for e in items:
        d = e.WhichOneof('detail')
        det = getattr(e, d) if d else None
        extra = ''
        if d == 'ended': extra = det.cause + '/' + det.from_state
        elif d == 'assigned': extra = det.via
        elif d == 'unreplied_alert': extra = ','.join(sorted(x.split('/')[-1] for x in det.notify))
        res.append((e.type, extra))
    return res


class Env:
    """One tenant on one node with collectors."""
    def __init__(self, n, tid, routing, settings=None, groups=('g1',), group_replies=None,
                 policy=None):
        self.n, self.tid = n, tid
        self.t = 'tenants/' + tid
        st = settings or A.TenantSettings()
        if not st.default_group:
            st.default_group = self.g(groups[0])
        # groups must exist before default_group? create tenant without default first
        dg = st.default_group; st.default_group = ''
        n.admin.CreateTenant(A.CreateTenantRequest(tenant_id=tid, routing=routing, settings=st))
        for g in groups:
            pol = policy or A.RoutingPolicy(strategy=A.STRATEGY_LEAST_OCCUPIED,
                                           offer_mode=A.OFFER_MODE_AUTO_ACCEPT)
            n.admin.PutGroup(A.PutGroupRequest(name=self.g(g), policy=pol,
                                               replies=(group_replies or {}).get(g)))
        n.admin.UpdateTenant(A.UpdateTenantRequest(
            name=self.t, settings=A.TenantSettings(default_group=dg),
            update_mask=field_mask_pb2.FieldMask(paths=['settings.default_group'])))
        self.out = Collector(n, tid, 'out')
        self.ev = Collector(n, tid, 'ev')

    def g(self, g): return f'{self.t}/groups/{g}'
    def a(self, a): return f'{self.t}/agents/{a}'
    def u(self, u): return f'{self.t}/customers/{u}'

    def agent(self, a, groups=('g1',), cap=5, nick=None, replies=None, online=True, sup=False):
        self.n.admin.PutAgent(A.PutAgentRequest(name=self.a(a), nickname=nick or a.upper(),
            capacity=cap, groups=[self.g(g) for g in groups], replies=replies, supervisor=sup))
        if online: self.status(a, CH.AGENT_STATUS_ONLINE)

    def status(self, a, st):
        self.n.agent.SetStatus(AG.SetStatusRequest(agent=self.a(a), status=st))

    def post(self, u, text, channel=CH.CHANNEL_WEB, **kw):
        return self.n.chan.PostMessage(C.PostMessageRequest(customer=self.u(u), channel=channel,
                                                            text=text, **kw))

    def send(self, a, conv, text, **kw):
        return self.n.agent.SendMessage(AG.SendMessageRequest(agent=self.a(a), conversation=conv,
                                                              text=text, **kw))

    def conv(self, c):
        return self.n.chan.GetConversation(C.GetConversationRequest(conversation=c))

    def wait_state(self, c, state, timeout=15):
        end = time.time() + timeout
        while time.time() < end:
            if self.conv(c).state == state: return True
            time.sleep(0.05)
        return False

    def outs(self, conv=None):
        return out_summary([m for m in self.out.snap() if conv is None or m.conversation == conv])

    def evs(self, conv=None, skip=('agent_status_changed',)):
        return [x for x, e in zip(ev_summary(self.ev.snap()), self.ev.snap())
                if x[0] not in skip and (conv is None or e.conversation == conv)]

    def settle(self, secs=0.6):
        time.sleep(secs)

    def close(self):
        self.out.close(); self.ev.close()


def diff_run(probe, label=None):
    """Run probe(env_factory) for both routings on one node each; return dict routing->result."""
    res = {}
    for name, r in ROUTINGS:
        with Node() as n:
            try:
                res[name] = probe(n, r)
            except grpc.RpcError as e:
                res[name] = ('RPC_ERROR', e.code().name, e.details())
    return res


def report(name, res, expect=None):
    """Prints both results, PASS when they agree (and match `expect` when given)."""
    ok = True
    vals = list(res.values())
    for k, v in res.items():
        print(f'  {k}: {v}')
    if len(vals) == 2 and vals[0] != vals[1]:
        print(f'  DIVERGENCE between routings'); ok = False
    if expect is not None:
        for k, v in res.items():
            if v != expect:
                print(f'  {k} != expected {expect}'); ok = False
    print(f'{"PASS" if ok else "FAIL"}: {name}')
    return ok
