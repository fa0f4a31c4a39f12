#!/usr/bin/env bash
# Installs the logtap agent as a systemd service on this machine (a VM or bare-metal host) and
# starts it.
#
#   cargo build --release --locked -p logtap-agent -p logtap-interceptor -p logtap-musl
#   sudo deploy/systemd/install.sh [target/release]
#
# Idempotent: re-running it upgrades the binary and the library and keeps an existing
# /etc/logtap/logtap.toml and logtap.env. The library is replaced by rename, so services that have
# it loaded keep their copy until they restart.
#
# Order matters on an upgrade: the configuration is validated by the *new* binary before anything
# is replaced, so a file the new version rejects leaves the running agent, its binary and its unit
# as they were. Whether the Fluentd servers answer is checked last and only reported: the agent
# buffers (memory, then its spool) and retries until they do, so an unreachable server — or the
# example servers of a fresh install — is no reason not to start it.
#
# DESTDIR=DIR writes every file under DIR instead of / (a staging root, used by the tests, which
# put stand-ins for systemctl and systemd-sysusers first on PATH); systemd-sysusers then gets
# --root=DIR, and systemctl is called as without it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-$here/../../target/release}"
root="${DESTDIR:-}"

die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo), it writes to /usr/local, /etc and /usr/lib/sysusers.d"
command -v systemctl >/dev/null || die "systemctl not found: this script is for systemd hosts"
command -v systemd-sysusers >/dev/null || die "systemd-sysusers not found (systemd >= 215 needed)"
[ -x "$build/logtap" ] || die "no logtap binary in $build: build it first (cargo build --release --locked -p logtap-agent)"
[ -f "$build/liblogtap.so" ] || die "no liblogtap.so in $build: build it first (cargo build --release --locked -p logtap-interceptor)"

config="$root/etc/logtap/logtap.toml"
if [ -e "$config" ]; then
  candidate="$config"
else
  candidate="$here/../config/vm.toml"
fi
# 1. Validate (offline) with the binary about to be installed, before anything changes.
"$build/logtap" check --offline --config "$candidate" >/dev/null \
  || die "$candidate does not pass 'logtap check --offline' with the new binary: nothing was changed; fix it, then re-run"

# 2. Install. Copy to a temporary name and rename over the old file: a library that running
# processes have mapped must never be truncated in place.
install_atomic() { # MODE SRC DEST
  local tmp
  tmp="$(dirname "$3")/.$(basename "$3").new"
  install -m "$1" "$2" "$tmp"
  mv -f "$tmp" "$3"
}

install -d -m 0755 "$root/usr/local/bin" "$root/usr/local/lib/logtap" "$root/etc/logtap" \
  "$root/usr/lib/sysusers.d" "$root/etc/systemd/system"
install_atomic 0755 "$build/logtap" "$root/usr/local/bin/logtap"
# The libraries and the $LIB links (tap-existing-service.conf's one LD_PRELOAD for glibc and musl
# services), by the binary just installed; liblogtap-musl.so too when the build made it (musl-tools).
"$root/usr/local/bin/logtap" install --library-only --preload "$build/liblogtap.so" \
  --to "$root/usr/local/lib/logtap" >/dev/null

install -m 0644 "$here/logtap.sysusers.conf" "$root/usr/lib/sysusers.d/logtap.conf"
systemd-sysusers ${root:+"--root=$root"} "$root/usr/lib/sysusers.d/logtap.conf"

if [ ! -e "$config" ]; then
  install -m 0644 "$here/../config/vm.toml" "$config"
  echo "installed /etc/logtap/logtap.toml: set your Fluentd servers in it, then: systemctl restart logtap-agent"
fi
if [ ! -e "$root/etc/logtap/logtap.env" ]; then
  install -m 0600 "$here/logtap.env" "$root/etc/logtap/logtap.env"
fi

install_atomic 0644 "$here/logtap-agent.service" "$root/etc/systemd/system/logtap-agent.service"

# 3. Start. Type=notify: `restart` returns once the agent listens on its socket, or fails.
systemctl daemon-reload
systemctl enable logtap-agent.service
systemctl restart logtap-agent.service \
  || die "logtap-agent did not start: journalctl -u logtap-agent -n 50 says why"
systemctl --no-pager --lines=5 status logtap-agent.service || true

# 4. Report whether the servers answer (DNS, TCP, TLS, shared key). Not fatal: see the header.
# The secrets the agent gets from logtap.env (EnvironmentFile=) take part in the handshake.
probe() {
  local line
  if [ -r "$root/etc/logtap/logtap.env" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in
        '' | '#'* | ';'*) ;;
        [A-Za-z_]*=*) export "${line?}" ;;
      esac
    done <"$root/etc/logtap/logtap.env"
  fi
  "$root/usr/local/bin/logtap" check --config "$config" >/dev/null
}
if ! (probe); then
  printf '\ninstall.sh: warning: a forward server of %s did not answer (above). The agent runs and\n' "$config" >&2
  printf 'keeps the records (memory, then spool) until it does: set the servers in the file, then\n' >&2
  printf '  systemctl restart logtap-agent\n' >&2
fi

cat <<'NEXT'

logtap-agent is running. To tap a service (here: myapp.service):
  mkdir -p /etc/systemd/system/myapp.service.d
  cp deploy/systemd/tap-existing-service.conf /etc/systemd/system/myapp.service.d/logtap.conf
  systemctl daemon-reload && systemctl restart myapp.service
  journalctl -u logtap-agent -f
NEXT
