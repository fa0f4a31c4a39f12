#!/usr/bin/env bash
# The fluent-demo: a kind cluster with Fluentd as a DaemonSet (Forward input, acks), and every
# Kubernetes way to deploy logtap — the demo clock app with a native sidecar (sidecar.yaml) and a
# classic one (sidecar-classic.yaml), nginx whose access log is tapped (tap-file.yaml), and the
# node agents of DaemonSet mode (daemonset.yaml) with an app they serve (daemonset-app.yaml) —
# and the records of all four apps arriving in Fluentd's output.
#
#   fluent-demo/up.sh        # about 3–6 minutes the first time (Rust release build, image pulls)
#   fluent-demo/down.sh      # deletes the cluster
#
# Needs: docker (with a running daemon), kind >= 0.23, kubectl >= 1.29, internet access for the
# base images; nothing else on the host (no python). Environment: LOGTAP_DEMO_CLUSTER (default
# logtap-demo).
#
# Pipelines: with `set -o pipefail`, `producer | grep -q` fails (141) whenever grep exits at its
# first match before the producer is done writing (SIGPIPE). Output to be searched is therefore
# captured in a variable first and searched with a here-string.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cluster="${LOGTAP_DEMO_CLUSTER:-logtap-demo}"
ns=logtap-demo
node_ns=logtap-demo-node
logtap_image=logtap:0.1.0
clock_image=logtap-demo-clock:0.1.0

die() { printf '\nup.sh: %s\n' "$*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

need docker "install Docker Engine or Docker Desktop (https://docs.docker.com/engine/install/)"
need kind "install kind >= 0.23 (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
need kubectl "install kubectl >= 1.29 (https://kubernetes.io/docs/tasks/tools/)"
docker info >/dev/null 2>&1 \
  || die "cannot talk to the Docker daemon: is it running, and may this user use it (docker group)?"

step "kind cluster '$cluster'"
clusters="$(kind get clusters 2>/dev/null || true)"
if grep -qx -- "$cluster" <<<"$clusters"; then
  echo "reusing the existing cluster (fluent-demo/down.sh deletes it)"
else
  kind create cluster --name "$cluster" --config "$here/kind-config.yaml" --wait 180s
fi
kc() { kubectl --context "kind-$cluster" "$@"; }

# The API server's /version: {"major": "1", "minor": "31", ...} ("31+" on some distributions).
version="$(kc get --raw /version 2>/dev/null || true)"
minor="$(sed -n 's/.*"minor": *"\([0-9][0-9]*\).*/\1/p' <<<"$version")"
[ -n "$minor" ] || die "cannot read the cluster's Kubernetes version (kubectl get --raw /version failed)"
[ "$minor" -ge 29 ] || die "the cluster runs Kubernetes 1.$minor; native sidecars need >= 1.29 (upgrade kind, or use deploy/kubernetes/sidecar-classic.yaml)"

step "building the images (deploy/Dockerfile, deploy/demo/Dockerfile)"
DOCKER_BUILDKIT=1 docker build -f "$repo/deploy/Dockerfile" -t "$logtap_image" "$repo"
DOCKER_BUILDKIT=1 docker build -f "$repo/deploy/demo/Dockerfile" -t "$clock_image" "$repo/deploy/demo"

step "loading the images into the cluster's nodes"
if ! kind load docker-image --name "$cluster" "$logtap_image" "$clock_image"; then
  # With Docker's containerd image store, `kind load docker-image` fails
  # (https://github.com/kubernetes-sigs/kind/issues/3795); an archive of the images loads.
  echo "kind load docker-image failed: loading the images from an archive instead (docker save)"
  archive="$(mktemp "${TMPDIR:-/tmp}/logtap-demo-images.XXXXXX")"
  trap 'rm -f "$archive"' EXIT
  docker save -o "$archive" "$logtap_image" "$clock_image"
  kind load image-archive --name "$cluster" "$archive"
  rm -f "$archive"
fi

step "Fluentd: DaemonSet with in_forward, node-local Service fluentd.logging.svc:24224"
kc apply -f "$here/fluentd.yaml"
kc -n logging rollout status daemonset/fluentd --timeout=300s

step "the node agents (DaemonSet mode, namespace logtap)"
kc apply -f "$repo/deploy/kubernetes/daemonset.yaml"
kc -n logtap rollout status daemonset/logtap-node --timeout=300s

step "the tapped apps: clock (sidecar.yaml, sidecar-classic.yaml) and nginx (tap-file.yaml) in $ns, clock-node (daemonset-app.yaml) in $node_ns"
kc apply -f "$here/namespace.yaml"
kc -n "$ns" apply -f "$repo/deploy/kubernetes/sidecar.yaml" \
  -f "$repo/deploy/kubernetes/sidecar-classic.yaml" -f "$repo/deploy/kubernetes/tap-file.yaml"
kc -n "$node_ns" apply -f "$repo/deploy/kubernetes/daemonset-app.yaml"
kc -n "$ns" rollout status deployment/clock --timeout=300s
kc -n "$ns" rollout status deployment/clock-classic --timeout=300s
kc -n "$ns" rollout status deployment/web --timeout=300s
kc -n "$node_ns" rollout status deployment/clock-node --timeout=300s

step "a few requests to nginx (its access log is tapped and suppressed)"
for i in 1 2 3; do
  kc -n "$ns" exec deployment/clock -c app -- python3 -c \
    "import urllib.request; urllib.request.urlopen('http://web/?demo=$i').read()"
done

step "waiting for the records of all four apps in Fluentd's output"
fluentd_logs() { kc -n logging logs -l app.kubernetes.io/name=fluentd --tail=-1 --prefix 2>/dev/null; }
# A Deployment's pod is <deployment>-<hash>-<suffix>: clock-… must not match clock-classic-….
wanted="kube\\.$ns\\.clock-[a-z0-9]*-[a-z0-9]*\\.app\\.stdout
kube\\.$ns\\.clock-classic-[a-z0-9]*-[a-z0-9]*\\.app\\.stdout
kube\\.$ns\\.web-[a-z0-9]*-[a-z0-9]*\\.nginx\\.file
kube\\.$node_ns\\.clock-node-[a-z0-9]*-[a-z0-9]*\\.app\\.stdout"
missing="$wanted"
logs=""
for _ in $(seq 1 60); do
  logs="$(fluentd_logs || true)"
  missing=""
  while IFS= read -r pattern; do
    grep -q -- "$pattern" <<<"$logs" || missing="$missing  $pattern"$'\n'
  done <<<"$wanted"
  [ -n "$missing" ] || break
  sleep 2
done
grep -- "kube\\.$ns" <<<"$logs" | tail -n 12 || true
[ -z "$missing" ] || die "after 120 s, no records matching:
$missing
Look at:
  kubectl --context kind-$cluster -n $ns logs deployment/clock -c logtap
  kubectl --context kind-$cluster -n logtap logs daemonset/logtap-node
  kubectl --context kind-$cluster -n $ns describe pod -l app.kubernetes.io/name=clock"

nginx_log_size="$(kc -n "$ns" exec deployment/web -c nginx -- stat -c %s /var/log/nginx/access.log)"
cat <<EOT

Done. The lines above are Fluentd's stdout output: one record per line the apps wrote, tagged
kube.<namespace>.<pod>.<container>.<stream> (the DaemonSet mode's app is in $node_ns).
nginx's access.log on disk: $nginx_log_size bytes (suppressed: its lines went to Fluentd only).

  kubectl --context kind-$cluster -n logging logs -l app.kubernetes.io/name=fluentd -f --prefix
  kubectl --context kind-$cluster -n $ns logs deployment/clock -c logtap      # the agent's own log
  kubectl --context kind-$cluster -n $ns port-forward deployment/clock 2020   # then: curl localhost:2020/metrics
  fluent-demo/down.sh                                                          # delete the cluster
EOT
