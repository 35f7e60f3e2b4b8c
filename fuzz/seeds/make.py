#!/usr/bin/env python3
"""Writes the hand-made seeds of the `requests` fuzz target: length-prefixed protobuf
`Command`s (proto/switchboard/internal/v1/log.proto) that the fixture tenant accepts, so the
fuzzer starts from requests that reach deep into the handlers. Run from fuzz/:
`python3 seeds/make.py` (writes corpus/requests/seed-*)."""
import os

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value

def msg(*fields):
    return b"".join(field(n, v) for n, v in fields if v is not None)

def command(op_field, request):
    return msg((1, 1000), (op_field, request))

def framed(*cmds):
    out = b""
    for c in cmds:
        out += len(c).to_bytes(2, "big") + c
    return out

A = "tenants/acme/agents/alice"
B = "tenants/acme/agents/boss"
C = "tenants/acme/conversations/1"
seeds = {
    "post": [command(20, msg((1, "tenants/acme"), (2, "dave"), (3, 1), (4, "hi"), (5, "support")))],
    "reply-end": [
        command(34, msg((1, A), (2, C), (3, "hello"))),
        command(37, msg((1, A), (2, C))),
    ],
    "transfer": [command(36, msg((1, A), (2, C), (3, "boss")))],
    "supervise": [
        command(50, msg((1, B), (2, C), (3, "psst"))),
        command(51, msg((1, B), (2, A), (3, 3))),
        command(53, msg((1, B), (2, C))),
    ],
    "admin": [
        command(14, msg((1, "tenants/acme/agents/zed"), (3, 2), (4, "support"))),
        command(12, msg((1, "tenants/acme/groups/sales"))),
        command(16, msg((1, "tenants/acme/customers/carol"), (3, 2), (4, "sales"))),
    ],
    "rate": [command(23, msg((1, C))), command(24, msg((1, C), (2, 5), (3, "great")))],
}
os.makedirs("corpus/requests", exist_ok=True)
for name, cmds in seeds.items():
    with open(f"corpus/requests/seed-{name}", "wb") as f:
        f.write(framed(*cmds))
