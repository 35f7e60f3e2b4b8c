# agent.proto DeskCommands: "Each command is applied exactly as its call applies it (same checks, same answer, same request_id dedup)"
from common import *
A = agent_pb2
def probe(n, name, r):
    t = T(n, 'dk'+name.lower(), r, mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a1'); t.agent('a2')
    cq = t.post('u1').conversation.name
    ce = t.post('u2').conversation.name
    n.agent.Pick(A.AgentConversationRequest(agent=t.a('a2'), conversation=ce, request_id=rid()))
    n.agent.EndConversation(A.AgentConversationRequest(agent=t.a('a2'), conversation=ce, request_id=rid()))
    ghost = t.t + '/conversations/55555'
    cmds = [
      ('pick', A.DeskCommand(pick=A.AgentConversationRequest(agent=t.a('a1'), conversation=cq, request_id='d1'))),
      ('pick_again', A.DeskCommand(pick=A.AgentConversationRequest(agent=t.a('a1'), conversation=cq, request_id='d1'))),
      ('mark', A.DeskCommand(mark_read=A.AgentConversationRequest(agent=t.a('a1'), conversation=cq, request_id='d2'))),
      ('send', A.DeskCommand(send_message=A.SendMessageRequest(agent=t.a('a1'), conversation=cq, text='hi', request_id='d3'))),
      ('send_empty', A.DeskCommand(send_message=A.SendMessageRequest(agent=t.a('a1'), conversation=cq, text='', request_id='d4'))),
      ('send_other', A.DeskCommand(send_message=A.SendMessageRequest(agent=t.a('a2'), conversation=cq, text='x', request_id='d5'))),
      ('send_ghost', A.DeskCommand(send_message=A.SendMessageRequest(agent=t.a('a1'), conversation=ghost, text='x', request_id='d6'))),
      ('send_ended', A.DeskCommand(send_message=A.SendMessageRequest(agent=t.a('a2'), conversation=ce, text='x', request_id='d7'))),
      ('mark_ended', A.DeskCommand(mark_read=A.AgentConversationRequest(agent=t.a('a2'), conversation=ce, request_id='d8'))),
      ('no_rid', A.DeskCommand(mark_read=A.AgentConversationRequest(agent=t.a('a1'), conversation=cq))),
      ('reuse_kind', A.DeskCommand(end_conversation=A.AgentConversationRequest(agent=t.a('a1'), conversation=cq, request_id='d3'))),
      ('bare', A.DeskCommand(mark_read=A.AgentConversationRequest(agent='a1', conversation=cq, request_id='d9'))),
      ('empty_cmd', A.DeskCommand()),
      ('end', A.DeskCommand(end_conversation=A.AgentConversationRequest(agent=t.a('a1'), conversation=cq, request_id='d10'))),
    ]
    o = {}
    # send one at a time to keep ordering deterministic
    for k, cmd in cmds:
        try:
            res = list(n.agent.DeskCommands(iter([cmd]), timeout=10))
            if not res: o[k] = 'no answer'; continue
            x = res[0]
            w = x.WhichOneof('result')
            if w == 'error': o[k] = ('error', x.error.code, x.error.message[:90])
            elif w == 'conversation': o[k] = ('conv', S.ConversationState.Name(x.conversation.state), x.request_id)
            elif w == 'sent': o[k] = ('sent', x.sent.message.text, x.request_id)
            else: o[k] = ('?', w)
        except grpc.RpcError as e:
            o[k] = ('rpc', e.code().name, e.details()[:90])
    return o
def expect(o):
    return [f'{k}: {v}' for k, v in o.items() if (v[0]=='error' and v[1] in (2, 13)) or (v[0]=='rpc' and v[1] in ('INTERNAL','UNKNOWN'))]
report(run_both(probe), expect)
