# SPEC §8 live board: in progress, ended, total; per conversation messages, customer, agent msgs, first-response time
from common import *
def probe(n, name, r):
    st = admin_pb2.TenantSettings(message_received=admin_pb2.MessageReceivedReply(texts=['got it'], also_in_session=True))
    t = T(n, 'lb'+name.lower(), r, settings=st)
    t.agent('sup', sup=True, status=0); t.agent('a1', cap=10)
    o = {}
    c1 = t.post('u1', 'm1').conversation.name
    time.sleep(1.2)
    t.post('u1', 'm2')
    t.send('a1', c1, 'r1'); t.send('a1', c1, 'r2'); t.post('u1', 'm3')
    n.sup.Whisper(supervisor_pb2.WhisperRequest(supervisor=t.a('sup'), conversation=c1, text='w', request_id=rid()))
    c2 = t.post('u2', 'x').conversation.name
    c3 = t.post('u3', 'y').conversation.name
    n.agent.EndConversation(agent_pb2.AgentConversationRequest(agent=t.a('a1'), conversation=c3, request_id=rid()))
    def board():
        b = n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t))
        return b
    b = board()
    o['counts'] = (b.in_progress, b.ended, b.total)
    o['rows'] = sorted((x.conversation, S.ConversationState.Name(x.state), x.agent, x.messages, x.customer_messages, x.agent_messages, x.HasField('first_response')) for x in b.conversations)
    fr = {x.conversation: x.first_response.ToMilliseconds() for x in b.conversations if x.HasField('first_response')}
    o['fr_c1_ge_1s'] = fr.get(c1, 0) >= 1000
    cv = t.conv(c1)
    o['conv_counts'] = (cv.customer_messages, cv.agent_messages, cv.automatic_messages, cv.first_response.ToMilliseconds() >= 1000)
    o['conv_fr_eq_board'] = abs(cv.first_response.ToMilliseconds() - fr.get(c1, -1)) < 5
    # paging
    b1 = n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t, page=common_pb2.PageRequest(page_size=1)))
    o['page1'] = (len(b1.conversations), bool(b1.next_page_token))
    o['bad_token'] = code(lambda: n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t, page=common_pb2.PageRequest(page_token='garbage'))))[0]
    o['big_page'] = code(lambda: n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant=t.t, page=common_pb2.PageRequest(page_size=5000))))[0]
    o['unknown_tenant'] = code(lambda: n.sup.GetLiveBoard(supervisor_pb2.GetLiveBoardRequest(tenant='tenants/nope')))[0]
    n.restart(kill=True)
    b = board()
    o['counts_restart'] = (b.in_progress, b.ended, b.total)
    o['rows_restart'] = sorted((x.conversation, S.ConversationState.Name(x.state), x.agent, x.messages, x.customer_messages, x.agent_messages, x.HasField('first_response')) for x in b.conversations)
    return o
report(run_both(probe))
