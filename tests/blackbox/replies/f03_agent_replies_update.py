"""FINDING: on TENANT_ROUTING_ACTORS the agent's own automatic replies set with
AgentService.UpdateAgentReplies (agent.proto: "the agent level of SPEC §4") are not used;
compare PutAgent / PutGroup / UpdateTenant changes made after the agent exists."""
from rlib import *

def run(n, r, how, wait=2.0):
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(manual_end=T('T-END'))))
    e.agent('a1', cap=5)
    # warm up: one conversation so the actors exist
    c0 = e.post('u0', 'hi').conversation.name; e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c0))
    if how == 'UpdateAgentReplies':
        n.agent.UpdateAgentReplies(AG.UpdateAgentRepliesRequest(agent=e.a('a1'),
            replies=A.ReplySettings(manual_end=T('NEW-END'))))
    elif how == 'PutAgent':
        n.admin.PutAgent(A.PutAgentRequest(name=e.a('a1'), replies=A.ReplySettings(manual_end=T('NEW-END'))))
    elif how == 'PutGroup':
        n.admin.PutGroup(A.PutGroupRequest(name=e.g('g1'), replies=A.ReplySettings(manual_end=T('NEW-END')),
                                           update_mask=field_mask_pb2.FieldMask(paths=['replies'])))
    elif how == 'UpdateTenant':
        n.admin.UpdateTenant(A.UpdateTenantRequest(name=e.t, settings=A.TenantSettings(replies=A.ReplySettings(manual_end=T('NEW-END'))),
                                                   update_mask=field_mask_pb2.FieldMask(paths=['settings.replies'])))
    time.sleep(wait)
    got = list(n.admin.GetAgent(A.GetAgentRequest(name=e.a('a1'))).replies.manual_end.texts)
    c1 = e.post('u1', 'hi').conversation.name; e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c1)); e.settle()
    return got, [t for _, t in e.outs(c1)]

ok = True
for how in ('UpdateAgentReplies', 'PutAgent', 'PutGroup', 'UpdateTenant'):
    exp = (['NEW-END'] if how in ('UpdateAgentReplies', 'PutAgent') else [], ['NEW-END'])
    ok &= report(f'reply change via {how} takes effect', diff_run(lambda n, r: run(n, r, how)), exp)
