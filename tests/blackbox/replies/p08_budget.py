"""SPEC §4 channel reply budgets: mini-program 5, official account 20, web unlimited; automatic
replies never consume the human reserve (default 1, configurable)."""
from rlib import *

def probe(channel, ntexts, reserve=None, agent_msgs=3):
    def run(n, r):
        st = A.TenantSettings(replies=A.ReplySettings(
            auto_accept=A.AutoAcceptReply(texts=[f'aa{i}' for i in range(ntexts)])),
            message_received=A.MessageReceivedReply(texts=['MR'], also_in_session=True))
        if reserve is not None: st.human_reserve = reserve
        e = Env(n, 't1', r, st)
        e.agent('a1', cap=1)
        c = e.post('u1', 'hi', channel=channel).conversation.name
        e.settle()
        autos = len(e.outs(c))
        sent = []
        for i in range(agent_msgs):
            try: e.send('a1', c, f'h{i}'); sent.append('ok')
            except grpc.RpcError as x: sent.append(x.code().name)
        e.post('u1', 'again', channel=channel); e.settle()
        sent2 = []
        for i in range(agent_msgs):
            try: e.send('a1', c, f'k{i}'); sent2.append('ok')
            except grpc.RpcError as x: sent2.append(x.code().name)
        conv = e.conv(c)
        return autos, sent, sent2, conv.automatic_messages
    return run

RE = 'RESOURCE_EXHAUSTED'
report('mini-program default reserve', diff_run(probe(CH.CHANNEL_MINI_PROGRAM, 6, None, 6)),
       (4, ['ok', RE, RE, RE, RE, RE], ['ok', 'ok', 'ok', 'ok', RE, RE], 5))
report('mini-program reserve 0', diff_run(probe(CH.CHANNEL_MINI_PROGRAM, 6, 0, 2)),
       (5, [RE, RE], ['ok', 'ok'], 6))
report('mini-program reserve 3', diff_run(probe(CH.CHANNEL_MINI_PROGRAM, 6, 3, 4)),
       (2, ['ok', 'ok', 'ok', RE], ['ok', 'ok', 'ok', 'ok'], 3))
report('official account default reserve', diff_run(probe(CH.CHANNEL_OFFICIAL_ACCOUNT, 20, None, 2)),
       (19, ['ok', RE], ['ok', 'ok'], 20))
report('web unlimited', diff_run(probe(CH.CHANNEL_WEB, 20, None, 2)), (21, ["ok", "ok"], ["ok", "ok"], 22))
report('email unlimited', diff_run(probe(CH.CHANNEL_EMAIL, 20, None, 2)), (21, ["ok", "ok"], ["ok", "ok"], 22))
report('app unlimited', diff_run(probe(CH.CHANNEL_APP, 20, None, 2)), (21, ["ok", "ok"], ["ok", "ok"], 22))
report('mini-program reserve 10 (> limit)', diff_run(probe(CH.CHANNEL_MINI_PROGRAM, 6, 10, 6)),
       (0, ['ok'] * 5 + [RE], ['ok'] * 5 + [RE], 0))
report('official account reserve 10', diff_run(probe(CH.CHANNEL_OFFICIAL_ACCOUNT, 20, 10, 2)),
       (10, ['ok', 'ok'], ['ok', 'ok'], 11))
