"""Builds Forward, PackedForward (bin and str32 bodies) and CompressedPackedForward (several gzip
members) frames with Python msgpack, writes them to the file argv[1], and prints on stdout the
JSON the Rust decoder must find in them (protocol/tests/forward_interop.rs)."""
import gzip
import json
import struct
import sys

import msgpack


def et(secs, nanos):
    return msgpack.ExtType(0, struct.pack(">II", secs, nanos))


def ext8_time(secs, nanos):
    # `ext 8` form of an EventTime (c7 08 00 ...), which msgpack-python never picks by itself.
    return b"\xc7\x08\x00" + struct.pack(">II", secs, nanos)


def entry(secs, nanos, rec):
    return msgpack.packb([et(secs, nanos), rec])


records = [{"message": "line %d" % i, "seq": i, "ok": i % 2 == 0} for i in range(5)]
frames = []
expected = []


def expect(mode, tag, events, chunk=None, compressed=None):
    expected.append({"mode": mode, "tag": tag, "events": events, "chunk": chunk, "compressed": compressed})


# Forward mode: EventTime and integer time, chunk as str.
frames.append(msgpack.packb(["py.forward", [[et(1700000000, 1), records[0]], [1700000002, records[1]]], {"chunk": "cid-1", "size": 2}]))
expect("Forward", "py.forward", [[1700000000, 1, records[0]], [1700000002, 0, records[1]]], chunk="cid-1")

# PackedForward with a bin body, chunk as bin.
body = entry(1700000010, 999999999, records[2]) + entry(1700000011, 0, records[3])
frames.append(msgpack.packb(["py.packed", body, {"chunk": b"cid-2\n", "size": 2}], use_bin_type=True))
expect("PackedForward", "py.packed", [[1700000010, 999999999, records[2]], [1700000011, 0, records[3]]], chunk="cid-2\n")

# PackedForward with a str32 body (as Fluentd sends it) and compressed: "text".
body = entry(1700000020, 5, records[4])
frames.append(b"\x93" + msgpack.packb("py.str32") + b"\xdb" + struct.pack(">I", len(body)) + body + msgpack.packb({"compressed": "text"}))
expect("PackedForward", "py.str32", [[1700000020, 5, records[4]]], compressed="text")

# CompressedPackedForward: three gzip members, one per entry.
gz = b"".join(gzip.compress(entry(1700000030 + i, i, records[i])) for i in range(3))
frames.append(msgpack.packb(["py.gzip", gz, {"compressed": "gzip", "size": 3, "chunk": "cid-3"}], use_bin_type=True))
expect("CompressedPackedForward", "py.gzip", [[1700000030 + i, i, records[i]] for i in range(3)], chunk="cid-3", compressed="gzip")

# Message mode with an `ext 8` EventTime, and v1.5 entries in Forward mode.
frames.append(b"\x93" + msgpack.packb("py.ext8") + ext8_time(1700000040, 40) + msgpack.packb(records[0]))
expect("Message", "py.ext8", [[1700000040, 40, records[0]]])
frames.append(msgpack.packb(["py.v15", [[[et(1700000050, 50), {"k": "v"}], records[1]]]]))
expect("Forward", "py.v15", [[1700000050, 50, records[1]]])

# A nil time (Message mode) and integer / EventTime times of 0 seconds (Forward mode): Fluentd's
# in_forward stamps them with the time of arrival (`time.to_i == 0`); -1 stands for "now".
frames.append(msgpack.packb(["py.nil", None, records[2]]))
expect("Message", "py.nil", [[-1, -1, records[2]]])
frames.append(msgpack.packb(["py.zero", [[0, records[3]], [et(0, 5), records[4]]]]))
expect("Forward", "py.zero", [[-1, -1, records[3]], [-1, -1, records[4]]])

with open(sys.argv[1], "wb") as f:
    f.write(b"".join(frames))
print(json.dumps(expected))
