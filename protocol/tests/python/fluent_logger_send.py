"""Sends three events with PyPI fluent-logger (Message mode, nanosecond EventTime) to
127.0.0.1:PORT, for protocol/tests/forward_interop.rs. Exits non-zero if a send fails."""
import sys

from fluent import sender

port = int(sys.argv[1])
s = sender.FluentSender("interop", host="127.0.0.1", port=port, nanosecond_precision=True, timeout=5.0)
ok = True
ok &= s.emit_with_time("one", sender.EventTime(1700000000, 123456789), {"message": "hello", "n": 1})
ok &= s.emit_with_time("two", sender.EventTime.from_unix_nano(1700000001_000000001), {"message": "héllo", "list": [1, 2]})
ok &= s.emit("three", {"message": "now", "bin": b"\xff\x00"})
s.close()
if not ok:
    print("fluent-logger send failed:", s.last_error, file=sys.stderr)
    sys.exit(1)
