# Pull mode and statuses: busy/away/invisible get no pushed work; invisible can pick; pull needs pick.
from rt import *
def probe(n, r, o):
    t = T(n, 't1', r)
    t.group('g1', offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.group('gp', offer_mode=admin_pb2.OFFER_MODE_PULL)
    for a, st in [('busy', S.AGENT_STATUS_BUSY), ('away', S.AGENT_STATUS_AWAY), ('invis', S.AGENT_STATUS_INVISIBLE)]:
        t.agent(a, ['g1', 'gp'], cap=2, status=st)
    c1 = t.post('u1'); o.lab(c1.name, 'c1'); o('g1 post', o.c(c1))
    cp = t.post('up', group='gp'); o.lab(cp.name, 'cp'); o('gp post', o.c(cp))
    for a in ['busy', 'away', 'invis']:
        o(a, 'unaccepted', sorted(o.lab(x.name) for x in t.unaccepted(a)))
    for a in ['away', 'busy']:
        o(a, 'pick c1', err(lambda: t.pick(a, c1.name)))
    c1 = t.post('u1b'); o.lab(c1.name, 'c1b')
    o('invis pick c1b', o.c(t.pick('invis', c1.name)))
    o('invis load', t.getagent('invis').load)
    t.agent('on', ['gp'], cap=1, status=S.AGENT_STATUS_ONLINE)
    time.sleep(0.3)
    o('pull: online agent not pushed', o.c(t.conv(cp.name)))
    o('on pick cp', o.c(t.pick('on', cp.name)))
    cp2 = t.post('up2', group='gp'); o.lab(cp2.name, 'cp2')
    o('on pick at capacity', err(lambda: t.pick('on', cp2.name)))
    o('pick assigned conv', err(lambda: t.pick('invis', cp.name)))
    o('pick ended conv', err(lambda: (n.chan.CloseConversation(channel_pb2.ConversationRequest(conversation=cp2.name, request_id=rid())), t.pick('invis', cp2.name))))
    # offline agent picks
    t.agent('off', ['g1'], cap=1)
    c3 = t.post('u3'); o.lab(c3.name, 'c3')
    o('offline pick', err(lambda: t.pick('off', c3.name)))
    # agent not in group picks
    t.group('gx', offer_mode=admin_pb2.OFFER_MODE_PULL)
    t.agent('other', ['gx'], cap=1, status=S.AGENT_STATUS_ONLINE)
    o('non-member pick', err(lambda: t.pick('other', c3.name)))
    o('c3 final', o.c(t.conv(c3.name)))
compare(probe)
