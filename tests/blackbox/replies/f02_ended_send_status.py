"""FINDING: SendMessage (and other agent calls) on an ENDED conversation: status code differs
between routings (TENANT_ACTOR: FAILED_PRECONDITION; ACTORS: NOT_FOUND although
GetConversation finds it)."""
from rlib import *

def code(f):
    try: f(); return 'ok'
    except grpc.RpcError as x: return x.code().name

def run(n, r):
    e = Env(n, 't1', r)
    e.agent('a1', cap=2)
    c = e.post('u1', 'hi').conversation.name
    e.settle()
    n.agent.EndConversation(AG.AgentConversationRequest(agent=e.a('a1'), conversation=c)); e.settle()
    req = lambda: AG.AgentConversationRequest(agent=e.a('a1'), conversation=c)
    return {'get': CH.ConversationState.Name(e.conv(c).state),
            'send': code(lambda: e.send('a1', c, 'late')),
            'end_again': code(lambda: n.agent.EndConversation(req())),
            'mark_read': code(lambda: n.agent.MarkRead(req())),
            'invite_rating': code(lambda: n.agent.InviteRating(req())),
            'transfer': code(lambda: n.agent.Transfer(AG.TransferRequest(agent=e.a('a1'), conversation=c, to_group=e.g('g1')))),
            'bot_hosting': code(lambda: n.agent.SetBotHosting(AG.AgentBotHostingRequest(agent=e.a('a1'), conversation=c, on=True))),
            'request_human': code(lambda: n.chan.RequestHuman(C.ConversationRequest(conversation=c))),
            'close': code(lambda: n.chan.CloseConversation(C.ConversationRequest(conversation=c)))}

report('status codes on an ended conversation agree', diff_run(run))
