#!/usr/bin/env bash
# What a tapped write and printf line cost under liblogtap-musl.so, beside the same program
# untapped and the same source built with gcc under liblogtap.so, into a release agent with
# `--output null`. 2N + 1 records (N default 3000) stay below the default ring's 8,192 slots, so that no
# write waits for the agent: this is the hook's own cost. Interleaved, ROUNDS rounds.
#   cargo build --release -p logtap-agent -p logtap-interceptor -p logtap-musl
#   musl/bench/tap_cost.sh [N] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
rel=$root/target/release
n=${1:-3000}
rounds=${2:-5}
work=$(mktemp -d)
trap 'kill "$agent" 2>/dev/null || true; rm -rf "$work"' EXIT
musl-gcc -O2 -o "$work/musl" "$root/musl/bench/tap_cost.c"
gcc -O2 -o "$work/glibc" "$root/musl/bench/tap_cost.c"
"$rel/logtap" agent --socket "$work/tap.sock" --http-listen off --output null >/dev/null 2>&1 &
agent=$!
while [ ! -S "$work/tap.sock" ]; do sleep 0.05; done
tap=(LLT_TARGET="socket:$work/tap.sock" LLT_TAP_INTO=3)
for _ in $(seq "$rounds"); do
  printf 'musl  untapped  %s\n' "$("$work/musl" "$n" 2>&1 >/dev/null)"
  printf 'musl  tapped    %s\n' "$(env "${tap[@]}" LD_PRELOAD="$rel/liblogtap-musl.so" "$work/musl" "$n" 2>&1 >/dev/null)"
  printf 'glibc untapped  %s\n' "$("$work/glibc" "$n" 2>&1 >/dev/null)"
  printf 'glibc tapped    %s\n' "$(env "${tap[@]}" LD_PRELOAD="$rel/liblogtap.so" "$work/glibc" "$n" 2>&1 >/dev/null)"
done
uptime
