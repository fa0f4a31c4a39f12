#!/usr/bin/env bash
# The fluent-demo: a kind cluster with Fluentd as a DaemonSet (Forward input, acks), the demo clock
# app and nginx tapped by logtap sidecars, and the records arriving in Fluentd's output.
#
#   fluent-demo/up.sh        # about 3–6 minutes the first time (Rust release build, image pulls)
#   fluent-demo/down.sh      # deletes the cluster
#
# Needs: docker (with a running daemon), kind >= 0.23, kubectl >= 1.29, internet access for the
# base images. Environment: LOGTAP_DEMO_CLUSTER (default logtap-demo).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
cluster="${LOGTAP_DEMO_CLUSTER:-logtap-demo}"
ns=logtap-demo
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
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  echo "reusing the existing cluster (fluent-demo/down.sh deletes it)"
else
  kind create cluster --name "$cluster" --config "$here/kind-config.yaml" --wait 180s
fi
kc() { kubectl --context "kind-$cluster" "$@"; }

minor="$(kc version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["minor"].rstrip("+"))' 2>/dev/null || true)"
[ -n "$minor" ] || die "cannot read the cluster's Kubernetes version (kubectl version failed)"
[ "$minor" -ge 29 ] || die "the cluster runs Kubernetes 1.$minor; native sidecars need >= 1.29 (upgrade kind, or use deploy/kubernetes/sidecar-classic.yaml)"

step "building the images (deploy/Dockerfile, deploy/demo/Dockerfile)"
DOCKER_BUILDKIT=1 docker build -f "$repo/deploy/Dockerfile" -t "$logtap_image" "$repo"
DOCKER_BUILDKIT=1 docker build -f "$repo/deploy/demo/Dockerfile" -t "$clock_image" "$repo/deploy/demo"

step "loading the images into the cluster's nodes"
kind load docker-image --name "$cluster" "$logtap_image" "$clock_image"

step "Fluentd: DaemonSet with in_forward, node-local Service fluentd.logging.svc:24224"
kc apply -f "$here/fluentd.yaml"
kc -n logging rollout status daemonset/fluentd --timeout=300s

step "the tapped apps in namespace $ns: clock (sidecar.yaml) and nginx (tap-file.yaml)"
kc apply -f "$here/namespace.yaml"
kc -n "$ns" apply -f "$repo/deploy/kubernetes/sidecar.yaml" -f "$repo/deploy/kubernetes/tap-file.yaml"
kc -n "$ns" rollout status deployment/clock --timeout=300s
kc -n "$ns" rollout status deployment/web --timeout=300s

step "a few requests to nginx (its access log is tapped and suppressed)"
for i in 1 2 3; do
  kc -n "$ns" exec deployment/clock -c app -- python3 -c \
    "import urllib.request; urllib.request.urlopen('http://web/?demo=$i').read()"
done

step "waiting for the records in Fluentd's output"
fluentd_logs() { kc -n logging logs -l app.kubernetes.io/name=fluentd --tail=-1 --prefix 2>/dev/null; }
found=""
for _ in $(seq 1 60); do
  if fluentd_logs | grep -q "kube\.$ns\.clock-.*\.app\.stdout" \
     && fluentd_logs | grep -q "kube\.$ns\.web-.*\.nginx\.file"; then
    found=yes
    break
  fi
  sleep 2
done
fluentd_logs | grep "kube\.$ns\." | tail -n 12 || true
[ -n "$found" ] || die "no records from both apps after 120 s. Look at:
  kubectl --context kind-$cluster -n $ns logs deployment/clock -c logtap
  kubectl --context kind-$cluster -n $ns describe pod -l app.kubernetes.io/name=clock"

nginx_log_size="$(kc -n "$ns" exec deployment/web -c nginx -- stat -c %s /var/log/nginx/access.log)"
cat <<EOT

Done. The lines above are Fluentd's stdout output: one record per line the apps wrote, tagged
kube.<namespace>.<pod>.<container>.<stream>. nginx's access.log on disk: $nginx_log_size bytes
(suppressed: its lines went to Fluentd only).

  kubectl --context kind-$cluster -n logging logs -l app.kubernetes.io/name=fluentd -f --prefix
  kubectl --context kind-$cluster -n $ns logs deployment/clock -c logtap      # the agent's own log
  kubectl --context kind-$cluster -n $ns port-forward deployment/clock 2020   # then: curl localhost:2020/metrics
  fluent-demo/down.sh                                                          # delete the cluster
EOT
