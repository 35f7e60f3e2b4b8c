"""SPEC §4: before transfer to a human only keyword, message-received and open-service replies fire."""
from rlib import *

def st(bot):
    return A.TenantSettings(transfer_to_human=bot,
        replies=A.ReplySettings(
            auto_accept=A.AutoAcceptReply(texts=['AA {{staff_name}}'], also_from_queue=True),
            queue=A.QueueReply(rules=[A.QueueRule(above=0, texts=['Q{{queue_num}}'])]),
            offline=A.OfflineReply(texts=['OFF']),
            agent_no_response=A.TimedReply(after=dur(1), texts=['ANR'])),
        keywords=[A.KeywordRule(keywords=['refund'], texts=['KW'])],
        message_received=A.MessageReceivedReply(texts=['MR']),
        open_service=T('OS {{nick_name}}'))

def run(n, r):
    e = Env(n, 't1', r, st(True))
    e.agent('a1', cap=1, nick='Ann', online=False)
    res = {}
    os_ = n.chan.OpenService(C.OpenServiceRequest(customer=e.u('u1'), channel=CH.CHANNEL_WEB))
    c = os_.conversation.name
    res['open_service'] = (os_.opened, CH.ConversationState.Name(os_.conversation.state))
    e.post('u1', 'hi', nickname='Uma'); e.post('u1', 'refund?')
    n.chan.OpenService(C.OpenServiceRequest(customer=e.u('u1'), channel=CH.CHANNEL_WEB))
    time.sleep(2); res['bot'] = e.outs(c)
    n.chan.RequestHuman(C.ConversationRequest(conversation=c)); e.settle()
    res['human_all_off'] = e.outs(c)[len(res['bot']):]
    e.post('u1', 'anyone?'); e.settle()
    e.status('a1', CH.AGENT_STATUS_ONLINE)
    e.wait_state(c, CH.CONVERSATION_STATE_ASSIGNED); time.sleep(2)
    res['after'] = e.outs(c)[len(res['bot']):]
    return res

exp = {'open_service': (True, 'CONVERSATION_STATE_BOT'),
       'bot': [('OPEN_SERVICE', 'OS '), ('MESSAGE_RECEIVED', 'MR'), ('KEYWORD', 'KW'), ('OPEN_SERVICE', 'OS Uma')],
       'human_all_off': [('OFFLINE', 'OFF')],
       'after': [('OFFLINE', 'OFF'), ('MESSAGE_RECEIVED', 'MR'), ('OFFLINE', 'OFF'), ('AUTO_ACCEPT', 'AA Ann'), ('AGENT_NO_RESPONSE', 'ANR')]}
# (agent-no-response counts from the assignment when the customer is still unanswered)
report('bot stage replies', diff_run(run), exp)

def nobot(n, r):
    e = Env(n, 't1', r, st(False))
    e.agent('a1', cap=1, nick='Ann')
    os_ = n.chan.OpenService(C.OpenServiceRequest(customer=e.u('u1'), channel=CH.CHANNEL_WEB))
    c = os_.conversation.name
    os2 = n.chan.OpenService(C.OpenServiceRequest(customer=e.u('u2'), channel=CH.CHANNEL_WEB))
    e.settle(1.5)
    return (CH.ConversationState.Name(e.conv(c).state), e.outs(c), CH.ConversationState.Name(e.conv(os2.conversation.name).state), e.outs(os2.conversation.name))
report('open service without bot', diff_run(nobot))
