# Page tokens are per call+filter; a token from a supervisor's search must not widen an agent's data scope
from common import *
def probe(n, name, r):
    t = T(n, 'tk'+name.lower(), r)
    t.agent('a1', cap=1); t.agent('a2', cap=1); t.agent('a3', cap=1); t.agent('sup', sup=True, status=0)
    cs = [t.post(f'u{i}').conversation.name for i in range(3)]
    o = {}
    sp = n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('sup'), page_size=1))
    o['sup_tok'] = bool(sp.next_page_token)
    tok = sp.next_page_token
    r1 = code(lambda: [c.name for c in n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('a1'), page_size=1, page_token=tok)).conversations])
    o['a1_with_sup_token'] = r1[0]
    try: o['a1_with_sup_token_rows'] = [c.name for c in n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('a1'), page_size=5, page_token=tok)).conversations]
    except grpc.RpcError as e: o['a1_with_sup_token_rows'] = e.code().name
    mine = [c for c in cs if t.conv(c).agent == t.a('a1')]
    o['a1_own'] = mine
    lt = n.sup.ListConversations(supervisor_pb2.ListConversationsRequest(parent=t.t, page_size=1)).next_page_token
    o['list_token_in_search'] = code(lambda: n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('a1'), page_token=lt)))[0]
    ft = n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('sup'), page_size=1, filter='state = ASSIGNED')).next_page_token
    o['token_other_filter'] = code(lambda: n.agent.SearchConversations(agent_pb2.SearchConversationsRequest(agent=t.a('sup'), page_size=1, filter='state = ENDED', page_token=ft)))[0]
    return o
def expect(o):
    rows = o.get('a1_with_sup_token_rows')
    if isinstance(rows, list) and any(x not in o['a1_own'] for x in rows): return [f'agent a1 read {rows} with a supervisor token (own: {o["a1_own"]})']
    return []
report(run_both(probe), expect)
