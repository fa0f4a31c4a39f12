#!/usr/bin/env bash
# Installs the logtap agent as a systemd service on this machine (a VM or bare-metal host).
#
#   cargo build --release --locked -p logtap-agent -p logtap-interceptor
#   sudo deploy/systemd/install.sh [target/release]
#
# Idempotent: re-running it upgrades the binary and the library and keeps an existing
# /etc/logtap/logtap.toml and logtap.env. The library is replaced by rename, so services that have
# it loaded keep their copy until they restart.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../../target/release}"

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo), it writes to /usr/local, /etc and /usr/lib/sysusers.d"
command -v systemctl >/dev/null || die "systemctl not found: this script is for systemd hosts"
command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found (systemd >= 215 needed)"
[ -x "$build/logtap" ] || die "no logtap binary in $build: build it first (cargo build --release --locked -p logtap-agent)"
[ -f "$build/liblogtap.so" ] || die "no liblogtap.so in $build: build it first (cargo build --release --locked -p logtap-interceptor)"

# Copy to a temporary name and rename over the old file: a library that running processes have
# mapped must never be truncated in place.
install_atomic() { # MODE SRC DEST
  local tmp
  tmp="$(dirname "$3")/.$(basename "$3").new"
  install -m "$1" "$2" "$tmp"
  mv -f "$tmp" "$3"
}

install -d -m 0755 /usr/local/bin /usr/local/lib/logtap /etc/logtap /usr/lib/sysusers.d
install_atomic 0755 "$build/logtap" /usr/local/bin/logtap
install_atomic 0755 "$build/liblogtap.so" /usr/local/lib/logtap/liblogtap.so

install -m 0644 "$here/logtap.sysusers.conf" /usr/lib/sysusers.d/logtap.conf
systemd-sysusers /usr/lib/sysusers.d/logtap.conf

if [ ! -e /etc/logtap/logtap.toml ]; then
  install -m 0644 "$here/../config/vm.toml" /etc/logtap/logtap.toml
  echo "installed /etc/logtap/logtap.toml: set your Fluentd servers in it"
fi
if [ ! -e /etc/logtap/logtap.env ]; then
  install -m 0600 "$here/logtap.env" /etc/logtap/logtap.env
fi

install -m 0644 "$here/logtap-agent.service" /etc/systemd/system/logtap-agent.service
systemctl daemon-reload

# Check the configuration before (re)starting: a bad file must not take the running agent down.
/usr/local/bin/logtap check --config /etc/logtap/logtap.toml >/dev/null \
  || die "/etc/logtap/logtap.toml does not pass 'logtap check': fix it, then re-run"

systemctl enable logtap-agent.service
systemctl restart logtap-agent.service
systemctl --no-pager --lines=5 status logtap-agent.service || true

cat <<'NEXT'

logtap-agent is running. To tap a service (here: myapp.service):
  mkdir -p /etc/systemd/system/myapp.service.d
  cp deploy/systemd/tap-existing-service.conf /etc/systemd/system/myapp.service.d/logtap.conf
  systemctl daemon-reload && systemctl restart myapp.service
  journalctl -u logtap-agent -f
NEXT
