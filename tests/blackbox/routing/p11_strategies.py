# Assignment strategies: least occupied, longest idle, round robin; deterministic ties.
from rt import *
def who(t, c): return t.conv(c.name).agent.split('/')[-1] or '-'
def probe(n, r, o):
    t = T(n, 't1', r)
    # least occupied
    t.group('lo', strategy=admin_pb2.STRATEGY_LEAST_OCCUPIED, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    t.agent('lo-b', ['lo'], cap=4, status=S.AGENT_STATUS_ONLINE)
    t.agent('lo-a', ['lo'], cap=2, status=S.AGENT_STATUS_ONLINE)
    seq = []
    for i in range(6):
        c = t.post(f'lo{i}', group='lo'); seq.append(who(t, c))
    o('least occupied', seq)
    # round robin
    t.group('rr', strategy=admin_pb2.STRATEGY_ROUND_ROBIN, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    for a in ['rr-c', 'rr-a', 'rr-b']: t.agent(a, ['rr'], cap=10, status=S.AGENT_STATUS_ONLINE)
    seq = []; cs = []
    for i in range(7):
        c = t.post(f'rr{i}', group='rr'); seq.append(who(t, c)); cs.append(c)
    o('round robin', seq)
    # rr with one agent ending conversations: still rotates
    t.end(cs[0].agent.split('/')[-1], cs[0].name)
    seq = []
    for i in range(3):
        c = t.post(f'rrb{i}', group='rr'); seq.append(who(t, c))
    o('round robin cont', seq)
    # longest idle
    t.group('li', strategy=admin_pb2.STRATEGY_LONGEST_IDLE, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    for a in ['li-c', 'li-a', 'li-b']:
        t.agent(a, ['li'], cap=2, status=S.AGENT_STATUS_ONLINE); time.sleep(0.1)
    seq = []; cs = []
    for i in range(3):
        c = t.post(f'li{i}', group='li'); seq.append(who(t, c)); cs.append(c); time.sleep(0.05)
    o('longest idle first round', seq)
    # end li-b's conv, then li-c's: li-b ended earlier -> idle longer? (li-a still busy)
    by = {who(t, c): c for c in cs}
    t.end('li-b', by['li-b'].name); time.sleep(0.1); t.end('li-c', by['li-c'].name); time.sleep(0.1)
    seq = []
    for i in range(4):
        c = t.post(f'lib{i}', group='li'); seq.append(who(t, c)); time.sleep(0.05)
    o('longest idle after ends', seq)
    # ties: many agents all equal, least occupied: who first?
    t.group('tie', strategy=admin_pb2.STRATEGY_LEAST_OCCUPIED, offer_mode=admin_pb2.OFFER_MODE_AUTO_ACCEPT)
    for a in ['tz', 'tb', 'tm', 'ta']: t.agent(a, ['tie'], cap=3, status=S.AGENT_STATUS_ONLINE)
    seq = []
    for i in range(8):
        c = t.post(f'tie{i}', group='tie'); seq.append(who(t, c))
    o('ties least occupied', seq)
compare(probe)
