"""Bad reply settings are INVALID_ARGUMENT (never INTERNAL / accepted), on UpdateTenant,
PutGroup, PutAgent and UpdateAgentReplies; extreme but valid durations do not break timers."""
from rlib import *
from google.protobuf import duration_pb2

def D(s, n=0): return duration_pb2.Duration(seconds=s, nanos=n)
BAD = {
    'anr_after_zero': A.ReplySettings(agent_no_response=A.TimedReply(after=D(0), texts=['x'])),
    'anr_after_unset': A.ReplySettings(agent_no_response=A.TimedReply(texts=['x'])),
    'anr_after_negative': A.ReplySettings(agent_no_response=A.TimedReply(after=D(-5), texts=['x'])),
    'idle_after_neg_nanos': A.ReplySettings(idle_end=A.TimedReply(after=D(0, -1), texts=['x'])),
    'queue_dup_above': A.ReplySettings(queue=A.QueueReply(rules=[A.QueueRule(above=3, texts=['a']), A.QueueRule(above=3, texts=['b'])])),
    'queue_neg_interval': A.ReplySettings(queue=A.QueueReply(rules=[A.QueueRule(above=3, texts=['a'])], min_interval=D(-1))),
    'offline_neg_interval': A.ReplySettings(offline=A.OfflineReply(texts=['a'], min_interval=D(-1))),
    'empty_text': A.ReplySettings(manual_end=T('')),
    'huge_text': A.ReplySettings(manual_end=T('x' * 9000)),
    'too_many_texts': A.ReplySettings(manual_end=T(*['x'] * 21)),
    'duration_out_of_range': A.ReplySettings(agent_no_response=A.TimedReply(after=D(10**12), texts=['x'])),
    'nanos_out_of_range': A.ReplySettings(agent_no_response=A.TimedReply(after=D(1, 2_000_000_000), texts=['x'])),
}

def code(f):
    try: f(); return 'ok'
    except grpc.RpcError as x: return x.code().name

def run(n, r):
    e = Env(n, 't1', r)
    e.agent('a1')
    res = {}
    for k, rs in BAD.items():
        res[k] = (code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(replies=rs),
                                                    update_mask=field_mask_pb2.FieldMask(paths=['settings.replies'])))),
                  code(lambda: n.admin.PutGroup(A.PutGroupRequest(name=e.g('g1'), replies=rs))),
                  code(lambda: n.admin.PutAgent(A.PutAgentRequest(name=e.a('a1'), replies=rs))),
                  code(lambda: n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent=e.a('a1'), replies=rs))))
    # other settings
    res['unreplied_alert_zero'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(unreplied_alert=D(0)), update_mask=field_mask_pb2.FieldMask(paths=['settings.unreplied_alert']))))
    res['retention_zero'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(retention_accepted=D(0)), update_mask=field_mask_pb2.FieldMask(paths=['settings.retention_accepted']))))
    res['window_zero'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(channels=[A.ChannelSettings(channel=CH.CHANNEL_WEB, reply_window=D(0))]), update_mask=field_mask_pb2.FieldMask(paths=['settings.channels']))))
    res['channel_unspecified'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(channels=[A.ChannelSettings(channel=CH.CHANNEL_UNSPECIFIED, replies=A.ReplySettings(manual_end=T('x')))]), update_mask=field_mask_pb2.FieldMask(paths=['settings.channels']))))
    res['channel_duplicate'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(channels=[A.ChannelSettings(channel=CH.CHANNEL_WEB), A.ChannelSettings(channel=CH.CHANNEL_WEB)]), update_mask=field_mask_pb2.FieldMask(paths=['settings.channels']))))
    res['keyword_empty'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(keywords=[A.KeywordRule(keywords=[' '], texts=['x'])]), update_mask=field_mask_pb2.FieldMask(paths=['settings.keywords']))))
    res['update_replies_bad_mask'] = code(lambda: n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent=e.a('a1'), update_mask=field_mask_pb2.FieldMask(paths=['keywords']))))
    res['update_replies_other_tenant'] = code(lambda: n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent='tenants/zz/agents/a1', replies=A.ReplySettings(manual_end=T('x')))))
    res['update_replies_bare'] = code(lambda: n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent='a1', replies=A.ReplySettings(manual_end=T('x')))))
    # huge but valid: 10000 years
    res['huge_valid'] = code(lambda: n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(
        unreplied_alert=D(315576000000), retention_accepted=D(315576000000), retention_unaccepted=D(315576000000),
        channels=[A.ChannelSettings(channel=CH.CHANNEL_WEB, reply_window=D(315576000000))],
        replies=A.ReplySettings(agent_no_response=A.TimedReply(after=D(315576000000), texts=['x']),
                                idle_end=A.TimedReply(after=D(315576000000), texts=['x']))),
        update_mask=field_mask_pb2.FieldMask(paths=['settings.unreplied_alert', 'settings.retention_accepted', 'settings.retention_unaccepted', 'settings.channels', 'settings.replies']))))
    c = e.post('u1', 'hi').conversation.name; e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c))
    res['after_huge'] = (CH.ConversationState.Name(e.conv(c).state), n.proc.poll())
    return res

IA = 'INVALID_ARGUMENT'
res = diff_run(run)
for k,v in res.items():
    if not isinstance(v, dict): print('  error', k, v)
ok = report('bad reply settings', res)
for k, v in res.items():
    if isinstance(v, dict):
        for kk, vv in v.items():
            vals = vv if isinstance(vv, tuple) else (vv,)
            if kk not in ('huge_valid', 'after_huge', 'update_replies_other_tenant') and any(x != IA and x != 'PERMISSION_DENIED' for x in vals):
                print(f'  {k} {kk}: {vv}  <-- not INVALID_ARGUMENT'); ok = False
            if any(x == 'INTERNAL' or x == 'UNKNOWN' for x in vals): print(f'  {k} {kk}: INTERNAL'); ok = False
print('PASS' if ok else 'FAIL', ': bad-input codes')
