# SPEC §8 data scope: see-all granted/revoked takes effect at once (proto SECURITY: "supervisor flag ... checked by the apply layer")
from common import *
FM = field_mask_pb2.FieldMask
def probe(n, name, r):
    t = T(n, 'sf'+name.lower(), r)
    t.agent('a1'); t.agent('s', sup=True, status=0)
    c = t.post('u1', 'secret').conversation.name
    o = {}
    SC = lambda: sorted(x.name for x in n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('s'))).conversations)
    o['sup_before'] = (len(SC()), code(lambda: t.hist('s', c))[0])
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('s'), supervisor=False, update_mask=FM(paths=['supervisor']), request_id=rid()))
    o['flag'] = n.admin.GetAgent(admin_pb2.GetAgentRequest(name=t.a('s'))).supervisor
    o['after_revoke_search'] = len(SC())
    o['after_revoke_hist'] = code(lambda: t.hist('s', c))[0]
    o['after_revoke_whisper'] = code(lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('s'), conversation=c, text='w', request_id=rid())))[0]
    o['after_revoke_update'] = code(lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=t.a('s'), conversation=c, note='x', request_id=rid())))[0]
    o['after_revoke_end'] = code(lambda: n.sup.EndConversation(supervisor_pb2.SupervisorConversationRequest(supervisor=t.a('s'), conversation=c, request_id=rid())))[0]
    o['after_revoke_status'] = code(lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('s'), agent=t.a('a1'), status=S.AGENT_STATUS_BUSY, request_id=rid())))[0]
    # grant to a1's peer a2 (not served)
    t.agent('a2', status=0)
    o['a2_before'] = code(lambda: t.hist('a2', c))[0]
    n.admin.PutAgent(admin_pb2.PutAgentRequest(name=t.a('a2'), supervisor=True, request_id=rid()))
    o['a2_after_grant'] = code(lambda: t.hist('a2', c))[0]
    o['a2_search_after_grant'] = len(sorted(x.name for x in n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('a2'))).conversations))
    return o
def expect(o):
    f = []
    for k in ('after_revoke_hist','after_revoke_whisper','after_revoke_update','after_revoke_end','after_revoke_status'):
        if o.get(k) == 'OK': f.append(f'{k}: still allowed after supervisor flag revoked')
    if o.get('after_revoke_search'): f.append('search still sees all after revoke')
    if o.get('a2_after_grant') != 'OK': f.append('grant not effective')
    return f
report(run_both(probe), expect)
