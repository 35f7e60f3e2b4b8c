"""SPEC §5 retention: transcripts of never-accepted conversations kept retention_unaccepted,
accepted ones retention_accepted (TenantSettings), then deleted; survives kill -9."""
from rlib import *

def code(f):
    try: f(); return 'ok'
    except grpc.RpcError as x: return x.code().name

def poke(n, e):
    # with a small store.snapshot_every, a few commands make the tenant actor snapshot (and retain)
    if POKE:
        for i in range(12):
            n.admin.PutGroup(A.PutGroupRequest(name=e.g('g1'), display_name=f'g{i}'))
            e.post(f'p{i}', 'poke', group=e.g('g1'))
        time.sleep(1)

def run(n, r, restart=False):
    st = A.TenantSettings(retention_unaccepted=dur(3), retention_accepted=dur(8),
                          replies=A.ReplySettings(manual_end=T('bye')),
                          message_received=A.MessageReceivedReply(texts=['MR']))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=1); e.agent('s1', sup=True, online=False)
    ca = e.post('u1', 'secret-accepted').conversation.name
    cu = e.post('u2', 'secret-unaccepted').conversation.name   # queued
    e.send('a1', ca, 'agent-text'); e.settle()
    n.chan.CloseConversation(C.ConversationRequest(conversation=cu))
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=ca))
    t0 = time.time()
    if restart:
        time.sleep(1); e.close(); n.restart(kill=True)
    get = lambda c: code(lambda: e.conv(c))
    hist = lambda c: code(lambda: n.agent.GetHistory(AG.GetHistoryRequest(agent=e.a('s1'), conversation=c)))
    res = {'t1': (get(ca), get(cu))}
    time.sleep(max(0, t0 + 5.5 - time.time()))
    poke(n, e)
    res['t5'] = (get(ca), get(cu), hist(cu))
    time.sleep(max(0, t0 + 11 - time.time()))
    poke(n, e)
    res['t11'] = (get(ca), get(cu), hist(ca))
    lst = n.sup.ListConversations(S.ListConversationsRequest(parent=e.t))
    res['listed'] = sum(1 for c in lst.conversations if c.name in (ca, cu))
    o = Collector(n, 't1', 'out'); time.sleep(1); texts = [m.text for m in o.snap()]; o.close()
    res['outbound_kept'] = [t for t in texts if t != 'MR' or not POKE]
    return res

exp = {'t1': ('ok', 'ok'), 't5': ('ok', 'NOT_FOUND', 'NOT_FOUND'), 't11': ('NOT_FOUND', 'NOT_FOUND', 'NOT_FOUND'),
       'listed': 0, 'outbound_kept': []}
POKE = False
print('-- default node (store.snapshot_every=10000): retention runs only with a snapshot')
report('retention', diff_run(run), exp)
POKE = True
import node as _node
_orig = _node.Node.__init__
def _init(self, *a, **k):
    _orig(self, *a, **k); self.env = {'SWITCHBOARD_STORE__SNAPSHOT_EVERY': '5'}
_node.Node.__init__ = _init
import rlib; rlib.Node = _node.Node
print('-- node with store.snapshot_every=5 and commands after the deadlines')
report('retention (snapshot_every=5)', diff_run(run), exp)
report('retention across kill -9 (snapshot_every=5)', diff_run(lambda n, r: run(n, r, True)), exp)
