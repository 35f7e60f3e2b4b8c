"""FINDING (both routings): SPEC §5 / admin.proto TenantSettings.retention_*: transcripts are
kept for the configured time, "then deleted". Deletion only runs when the tenant actor takes a
snapshot (tenant.rs: retain() is called from the snapshot branch, every store.snapshot_every =
10,000 commands or on a command arriving >= 1 h (SNAPSHOT_AGE) after the last snapshot), so an
ended conversation stays readable (GetConversation, GetHistory, ListConversations, StreamOutbound
from 0) long past its retention; a quiet tenant may never be swept. (With
SWITCHBOARD_STORE__SNAPSHOT_EVERY=5 and a few commands, deletion works: see p15_retention.py.)"""
from rlib import *

def code(f):
    try: f(); return 'ok'
    except grpc.RpcError as x: return x.code().name

def run(n, r):
    st = A.TenantSettings(retention_unaccepted=dur(1), retention_accepted=dur(2))
    e = Env(n, 't1', r, st)
    e.agent('a1', cap=1); e.agent('s1', sup=True, online=False)
    ca = e.post('u1', 'secret accepted').conversation.name
    cu = e.post('u2', 'secret unaccepted').conversation.name
    e.send('a1', ca, 'agent text'); e.settle()
    n.chan.CloseConversation(C.ConversationRequest(conversation=cu))
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=ca))
    time.sleep(8)   # 4x the longest retention
    # some ordinary traffic afterwards
    for i in range(5): e.post(f'x{i}', 'hello')
    e.settle()
    return {'get_accepted': code(lambda: e.conv(ca)), 'get_unaccepted': code(lambda: e.conv(cu)),
            'history': code(lambda: n.agent.GetHistory(AG.GetHistoryRequest(agent=e.a('s1'), conversation=ca)))}
report('transcripts deleted after retention', diff_run(run),
       {'get_accepted': 'NOT_FOUND', 'get_unaccepted': 'NOT_FOUND', 'history': 'NOT_FOUND'})
