# FINDING 47 (actors; the retry half fixed in the 48th session): a request id reused by
# another customer's call is applied on actors (a new customer's conversation actor skips the
# store lookup, `first_sight`: a documented choice, ARCHITECTURE "Skipped for a new
# customer"; the tenant actor refuses it), and its stored answer used to replace the first
# call's, so the first call's retry after a restart was refused "used by another call". The
# store now keeps the first call's answer (`Response::replaces`). Expected: the routings
# differ on `reuse_OtherConv` (actors OK, tenant FAILED_PRECONDITION), `retry` is OK on both.
# Name other reuses to try them (python3 f47_request_id_other_customer.py SetStatus EndBatch ...).
import os, sys; sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'desk'))
from common import *
which = sys.argv[1:] or ['OtherConv']
def probe(n, name, r):
    t = T(n, 'im'+name.lower(), r)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10); t.agent('a2')
    c1 = t.post('u1').conversation.name; c2 = t.post('u2').conversation.name
    a1 = t.conv(c1).agent
    rq = rid()
    n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='once', request_id=rq))
    a2c = t.conv(c2).agent
    calls = {
      'DiffText': lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='different', request_id=rq)),
      'OtherConv': lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a2c, conversation=c2, text='x', request_id=rq)),
      'Whisper': lambda: n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c1, text='w', request_id=rq)),
      'MarkRead': lambda: n.agent.MarkRead(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)),
      'Rate': lambda: n.chan.RateConversation(channel_pb2.RateConversationRequest(conversation=c1, score=3, request_id=rq)),
      'InviteRating': lambda: n.agent.InviteRating(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)),
      'BotHosting': lambda: n.agent.SetBotHosting(agent_pb2.AgentBotHostingRequest(agent=a1, conversation=c1, on=True, request_id=rq)),
      'AgentEnd': lambda: n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=a1, conversation=c1, request_id=rq)),
      'UpdateConversation': lambda: n.agent.UpdateConversation(agent_pb2.UpdateConversationRequest(agent=a1, conversation=c1, note='nn', request_id=rq)),
      'SetStatus': lambda: n.agent.SetStatus(agent_pb2.SetStatusRequest(agent=a1, status=S.AGENT_STATUS_BUSY, request_id=rq)),
      'PostMessage': lambda: n.chan.PostMessage(channel_pb2.PostMessageRequest(customer=t.c('u1'), channel=S.CHANNEL_WEB, text='zz', request_id=rq)),
      'QuickReplies': lambda: n.agent.PutPersonalQuickReplies(agent_pb2.PutPersonalQuickRepliesRequest(agent=a1, replies=[admin_pb2.QuickReply(title='a', text='b')], request_id=rq)),
      'SupBotHostingAll': lambda: n.sup.SetBotHosting(supervisor_pb2.SetBotHostingRequest(supervisor=t.a('sup'), all=True, on=True, request_id=rq)),
      'SupSetStatus': lambda: n.sup.SetAgentStatus(supervisor_pb2.SupervisorSetStatusRequest(supervisor=t.a('sup'), agent=a1, status=S.AGENT_STATUS_AWAY, request_id=rq)),
      'EndBatch': lambda: n.sup.EndBatch(supervisor_pb2.EndBatchRequest(supervisor=t.a('sup'), conversations=[c2], request_id=rq)),
      'Profile': lambda: n.agent.UpdateCustomerProfile(agent_pb2.UpdateCustomerProfileRequest(agent=a1, customer=t.c('u1'), phone='1', request_id=rq)),
    }
    o = {}
    for w in which: o['reuse_'+w] = code(calls[w])[0]
    n.restart(kill=True)
    o['retry'] = code(lambda: n.agent.SendMessage(agent_pb2.SendMessageRequest(agent=a1, conversation=c1, text='once', request_id=rq)))
    return o
def expect(o):
    f = [f'{k}: {v} (another call under a used id must be refused)' for k, v in o.items()
         if k.startswith('reuse_') and k != 'reuse_OtherConv' and v == 'OK']
    if o['retry'][0] != 'OK': f.append(f"the first call's retry after a restart: {o['retry']}")
    return f
report(run_both(probe), expect)
