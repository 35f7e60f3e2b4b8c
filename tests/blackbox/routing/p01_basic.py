from rt import *
def probe(n, name, r):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('a1', ['g1'], cap=1, status=S.AGENT_STATUS_ONLINE)
    c1 = t.post('u1'); c2 = t.post('u2')
    print(name, short(c1)); print(name, short(c2))
    print(name, short(t.conv(c1.name))); print(name, short(t.conv(c2.name)))
    print(t.conv(c1.name).transitions)
    print(t.getagent('a1'))
    return None
both(probe)
