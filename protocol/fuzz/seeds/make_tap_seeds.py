#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz_tap_decode corpus, encoded by Python's msgpack (an
independent encoder). `cargo fuzz cmin` drops seeds it finds redundant: run this again after it.
Usage: python3 protocol/fuzz/seeds/make_tap_seeds.py  (from the repository root)"""
import os
import struct

import msgpack

OUT = os.path.join(os.path.dirname(__file__), "..", "corpus", "fuzz_tap_decode")


def frame(kind, stream, payload, flags=0, pid=4242, seq=1, t=1795486809501046366, idx=0, plen=None):
    n = len(payload) if plen is None else plen
    return b"LTP1" + struct.pack("<BBHIIQII", kind, stream, flags, pid, seq, t, idx, n) + payload


hello = msgpack.packb({"pid": 4242, "ppid": 1, "comm": "python3", "exe": "/usr/bin/python3.11",
                       "hostname": "web-0", "container_id": "", "files": ["/var/log/app/*.log"],
                       "meta": {"POD_NAME": "web-0"}, "version": "0.1.0", "ring": True})
SEEDS = {
    "hello": frame(1, 0, hello),
    "data-stdout": frame(2, 1, b"hello world\n"),
    "data-continued": frame(2, 2, b"part one ", flags=1),
    "data-file": frame(2, 3, b"GET / 200\n", idx=2),
    "loss": frame(3, 1, msgpack.packb({"frames": 12, "bytes": 3456})),
    "file": frame(4, 0, msgpack.packb({"index": 2, "path": "/var/log/nginx/access.log"})),
    "hostile-len-mismatch": frame(2, 1, b"abc", plen=0xFFFFFFFF),
    "hostile-bad-magic": b"LTP9" + frame(2, 1, b"x")[4:],
    "hostile-hello-map32": frame(1, 0, b"\xdf\xff\xff\xff\xff"),
    "hostile-hello-deep": frame(1, 0, b"\x81\xa1x" + b"\x91" * 100 + b"\xc0"),
    "hostile-file-no-path": frame(4, 0, msgpack.packb({"index": 1})),
    "hostile-loss-negative": frame(3, 1, msgpack.packb({"frames": -1})),
    "hostile-short": b"LTP1\x02\x01",
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {os.path.normpath(OUT)}")
