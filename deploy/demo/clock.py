#!/usr/bin/env python3
"""The demo app: prints the time like the seed's clock.py, and a warning on stderr now and then.

It knows nothing about logtap; run it under `logtap run -- python3 deploy/demo/clock.py` (or with
LD_PRELOAD=liblogtap.so in a container) to see its lines turn into records.
"""

import argparse
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description="print the time every INTERVAL seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between lines (default 2)")
    parser.add_argument("--count", type=int, default=0, help="stop after COUNT lines (default: never)")
    args = parser.parse_args()
    n = 0
    while args.count == 0 or n < args.count:
        n += 1
        print(time.strftime("%H:%M:%S"))
        if n % 5 == 0:
            print(f"clock: {n} ticks so far", file=sys.stderr)
        if args.count == 0 or n < args.count:
            time.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
