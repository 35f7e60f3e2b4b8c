"""SPEC §3/§4: {{queue_num}} and position_display read 5000+ above 5000."""
from rlib import *

def run(n, r):
    q = A.QueueReply(rules=[A.QueueRule(above=4999, texts=['pos {{queue_num}}'])])
    e = Env(n, 't1', r, A.TenantSettings(replies=A.ReplySettings(queue=q)))
    e.agent('a1', cap=1)
    e.post('u0', 'x')
    N = 5001
    reqs = (C.PostMessageRequest(customer=e.u(f'c{i}'), channel=CH.CHANNEL_WEB, text='hi', request_id=f'r{i}')
            for i in range(1, N + 1))
    errs = [x for x in n.chan.PostMessages(reqs) if x.WhichOneof('result') == 'error']
    ok = e.out.wait(lambda s: sum(1 for m in s if m.reply_kind == CH.REPLY_KIND_QUEUE) >= 2, 60)
    outs = sorted(m.text for m in e.out.snap() if m.reply_kind == CH.REPLY_KIND_QUEUE)
    last = [m.conversation for m in e.out.snap() if m.text == 'pos 5000+'][0]
    cv = e.conv(last)
    return len(errs), outs, cv.position, cv.position_display
report('5000+ display', diff_run(run), (0, ['pos 5000', 'pos 5000+'], 5001, '5000+'))
