from common import *
def probe(n, name, r):
    t = T(n, 'sm'+name.lower(), r)
    t.agent('a1')
    st = agent_stream(n, t.a('a1'))
    p = t.post('u1', 'hello')
    c = p.conversation.name
    ev = st.wait(lambda e: kind(e)=='assigned')
    time.sleep(0.5)
    return {'state': S.ConversationState.Name(t.conv(c).state), 'events': [kind(e) for e in st.items], 'assigned': t.assigned('a1')==[c]}
report(run_both(probe))
