# SPEC §9 standard health checking and reflection
from common import *
def varint(b, i):
    x = s = 0
    while True:
        c = b[i]; i += 1; x |= (c & 0x7f) << s; s += 7
        if c < 0x80: return x, i
def fields(b):
    i = 0; out = []
    while i < len(b):
        k, i = varint(b, i); f, w = k >> 3, k & 7
        if w == 0: v, i = varint(b, i)
        elif w == 2: l, i = varint(b, i); v = b[i:i+l]; i += l
        else: raise ValueError(w)
        out.append((f, v))
    return out
def enc_str(f, s):
    s = s.encode(); return bytes([f << 3 | 2, len(s)]) + s
ident = lambda x: x
o = {}
with Node() as n:
    chk = n.channel.unary_unary('/grpc.health.v1.Health/Check', request_serializer=ident, response_deserializer=ident)
    for svc in ('', 'switchboard.v1.AgentService', 'switchboard.v1.EventService', 'switchboard.v1.SupervisorService', 'nope.Service'):
        try:
            r = chk(enc_str(1, svc) if svc else b'', timeout=5)
            o['health:'+svc] = dict(fields(r)).get(1)
        except grpc.RpcError as e:
            o['health:'+svc] = e.code().name
    for ver in ('v1', 'v1alpha'):
        refl = n.channel.stream_stream(f'/grpc.reflection.{ver}.ServerReflection/ServerReflectionInfo', request_serializer=ident, response_deserializer=ident)
        try:
            resp = list(refl(iter([b'\x3a\x00']), timeout=5))
            names = []
            for f, v in fields(resp[0]):
                if f == 6:
                    for f2, v2 in fields(v):
                        if f2 == 1: names.append(dict(fields(v2)).get(1, b'').decode())
            o['reflection_'+ver] = sorted(names)
            # file containing symbol for AgentService
            req = enc_str(4, 'switchboard.v1.AgentService')
            resp = list(refl(iter([req]), timeout=5))
            o['reflection_'+ver+'_symbol'] = [f for f, v in fields(resp[0])]
        except grpc.RpcError as e:
            o['reflection_'+ver] = e.code().name
for k, v in o.items(): print(k, v)
fails = []
if o.get('health:') != 1: fails.append('overall health not SERVING')
for s in ('AgentService','EventService','SupervisorService'):
    if o.get('health:switchboard.v1.'+s) != 1: fails.append(f'{s} health {o.get("health:switchboard.v1."+s)}')
if o.get('health:nope.Service') != 'NOT_FOUND': fails.append('unknown service health not NOT_FOUND')
if not any(isinstance(o.get('reflection_'+v), list) and 'switchboard.v1.AgentService' in o['reflection_'+v] for v in ('v1','v1alpha')): fails.append('reflection does not list services')
for f in fails: print('  -', f)
print('FAIL' if fails else 'PASS')
