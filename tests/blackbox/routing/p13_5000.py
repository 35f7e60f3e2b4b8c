# Queue positions above 5000 display `5000+`; exact position still reported; positions shift as others leave.
from rt import *
N = 5003
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    def gen():
        for i in range(N):
            yield channel_pb2.PostMessageRequest(customer=t.c(f'u{i}'), channel=S.CHANNEL_WEB, text='hi', group=t.g('g1'), request_id=f'r{i}')
    t0 = time.time()
    res = {}
    for x in n.chan.PostMessages(gen()):
        if x.WhichOneof('result') == 'error': res[x.request_id] = ('ERR', x.error.code, x.error.message)
        else: res[x.request_id] = x.response.conversation
    o('posted', len(res), 'errors', sum(1 for v in res.values() if isinstance(v, tuple)))
    print('post took', time.time() - t0)
    for i in [0, 4998, 4999, 5000, 5001, 5002]:
        c = res[f'r{i}']; o.lab(c.name, f'c{i}')
        o('at post', o.c(c))
        o('now', o.c(t.conv(c.name)))
    # remove two ahead: positions shift
    for i in [10, 20]:
        n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=res[f'r{i}'].name, request_id=rid()))
    for i in [5000, 5001, 5002]:
        o('after 2 leave', o.c(t.conv(res[f'r{i}'].name)))
    o('group waiting', n.admin.GetGroup(admin_pb2.GetGroupRequest(name=t.g('g1'))).waiting)
    t.agent('a1', ['g1'], cap=1)
    ul = n.agent.ListUnaccepted(agent_pb2.ListAgentConversationsRequest(agent=t.a('a1'), page=common_pb2.PageRequest(page_size=1000)))
    o('unaccepted page', len(ul.conversations), [x.position_display for x in ul.conversations[:2]], bool(ul.next_page_token))
compare(probe)
