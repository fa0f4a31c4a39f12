"""Reads a stream of Forward messages that logtap encoded (stdin) with Python msgpack and prints
one JSON line per message describing what an independent decoder sees: array shapes, MessagePack
types, EventTime as ext type 0 split into seconds/nanoseconds (protocol/tests/forward_interop.rs).
Also answers digest requests: with argv[1] == "digests", reads JSON lines of inputs and prints
hashlib's SHA-512 hex digests. With argv[1] == "peer", reads (Compressed)PackedForward from
another sender the same way, with the outer message read raw: Fluentd sends the PackedForward
body as a `str` that is not UTF-8 (tests/tests/agent_forward_wire.rs compares shapes)."""
import gzip
import hashlib
import json
import struct
import sys

import msgpack


def text(b):
    return b.decode("utf-8", "replace") if isinstance(b, (bytes, bytearray)) else b


def plain(v):
    if isinstance(v, msgpack.ExtType):
        return describe_time(v)
    if isinstance(v, dict):
        return {text(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (bytes, bytearray)):
        return {"bytes": text(v)}
    return v


def describe_time(t):
    if isinstance(t, msgpack.ExtType):
        secs, nanos = struct.unpack(">II", t.data)
        return {"ext": t.code, "len": len(t.data), "secs": secs, "nanos": nanos}
    return {"int": t}


def entries(body):
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(body)
    return [[describe_time(t), plain(r)] for t, r in u]


def digests():
    for line in sys.stdin:
        req = json.loads(line)
        parts = [bytes.fromhex(p) for p in req["parts"]]
        print(hashlib.sha512(b"".join(parts)).hexdigest())


def messages():
    u = msgpack.Unpacker(raw=False, strict_map_key=False)
    u.feed(sys.stdin.buffer.read())
    for msg in u:
        if isinstance(msg, dict):
            out = {"kind": "map", "value": plain(msg), "ack_is_bin": isinstance(msg.get("ack"), bytes)}
        elif msg[0] in ("HELO", "PING", "PONG"):
            out = {"kind": msg[0], "value": plain(msg[1:])}
        elif isinstance(msg[1], bytes):
            opts = plain(msg[2]) if len(msg) > 2 else {}
            body = gzip.decompress(msg[1]) if opts.get("compressed") == "gzip" else msg[1]
            out = {"kind": "PackedForward", "tag": msg[0], "entries": entries(body), "options": opts}
        elif isinstance(msg[1], list):
            opts = plain(msg[2]) if len(msg) > 2 else {}
            out = {"kind": "Forward", "tag": msg[0], "entries": [[describe_time(t), plain(r)] for t, r in msg[1]], "options": opts}
        else:
            opts = plain(msg[3]) if len(msg) > 3 else {}
            out = {"kind": "Message", "tag": msg[0], "entries": [[describe_time(msg[1]), plain(msg[2])]], "options": opts}
        print(json.dumps(out, sort_keys=True))


def peer_messages():
    u = msgpack.Unpacker(raw=True, strict_map_key=False)
    u.feed(sys.stdin.buffer.read())
    for msg in u:
        if not isinstance(msg[1], bytes):
            raise SystemExit("peer mode reads PackedForward only, got %r" % (msg[:1],))
        raw_opts = msg[2] if len(msg) > 2 else {}
        opts = {text(k): text(v) for k, v in raw_opts.items()}
        body = gzip.decompress(msg[1]) if opts.get("compressed") == "gzip" else msg[1]
        out = {"kind": "PackedForward", "tag": text(msg[0]), "entries": entries(body), "options": opts}
        print(json.dumps(out, sort_keys=True))


if len(sys.argv) > 1 and sys.argv[1] == "digests":
    digests()
elif len(sys.argv) > 1 and sys.argv[1] == "peer":
    peer_messages()
else:
    messages()
