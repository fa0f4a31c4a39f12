#!/usr/bin/env bash
# Deletes the fluent-demo's kind cluster (and, with --images, the two demo images).
#
#   fluent-demo/down.sh [--images]
set -euo pipefail

cluster="${LOGTAP_DEMO_CLUSTER:-logtap-demo}"

die() { printf 'down.sh: %s\n' "$*" >&2; exit 1; }
command -v kind >/dev/null 2>&1 || die "kind not found: nothing to delete without it"

remove_images=""
case "${1:-}" in
  "") ;;
  --images) remove_images=yes ;;
  *) die "unknown argument '$1' (usage: down.sh [--images])" ;;
esac

# Captured, then searched: under pipefail, `kind get clusters | grep -q` can fail with SIGPIPE.
clusters="$(kind get clusters 2>/dev/null || true)"
if grep -qx -- "$cluster" <<<"$clusters"; then
  kind delete cluster --name "$cluster"
else
  echo "no kind cluster named '$cluster'"
fi

if [ -n "$remove_images" ]; then
  command -v docker >/dev/null 2>&1 || die "docker not found: cannot remove the images"
  docker image rm logtap:0.1.0 logtap-demo-clock:0.1.0 || true
fi
