# Agent in an auto group, an offer group and a pull group: pushes only from push groups, best-first across them.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('gauto', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('goffer', offer_mode=admin_pb2.OFFER_MODE_OFFER, offer_timeout=dur(60))
    t.group('gpull', offer_mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('a1', ['gauto', 'goffer', 'gpull'], cap=1)
    cp = t.post('p', group='gpull', priority=9); o.lab(cp.name, 'pull-p9'); time.sleep(0.02)
    co = t.post('o', group='goffer', priority=1); o.lab(co.name, 'offer-p1'); time.sleep(0.02)
    ca = t.post('a', group='gauto', priority=1); o.lab(ca.name, 'auto-p1')
    t.status('a1', S.AGENT_STATUS_ONLINE); time.sleep(0.3)
    for c in [cp, co, ca]: o('online', o.c(t.conv(c.name)))
    o('pick while offered (cap 1)', err(lambda: t.pick('a1', cp.name)))
    t.decline('a1', co.name); time.sleep(0.3)
    for c in [cp, co, ca]: o('after decline', o.c(t.conv(c.name)))
compare(probe)
