#!/usr/bin/env bash
# The .deb that scripts/package.sh builds: its files, its units' syntax (systemd-analyze verify
# against the package's own tree), and its daemons started the way the units start them, from the
# package's binaries and /etc/kiln files: each tells systemd READY=1 through NOTIFY_SOCKET,
# RELOADING=1 then READY=1 on SIGHUP (systemctl reload), and STOPPING=1 on SIGTERM.
# This machine has no systemd running, so the units are not started by systemd itself.
#   tests/scripts/package_check.sh BUILD_DIR
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "$1" && pwd)"
work="$(mktemp -d /tmp/kiln-package-XXXXXX)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package_check: $*" >&2; exit 1; }

# Packages what the suite built, rebuilding nothing under the other tests' feet.
deb="$(KILN_PACKAGE_NO_BUILD=1 "$repo/scripts/package.sh" "$build" | tail -1)"
[ -f "$deb" ] || fail "scripts/package.sh made no .deb"
dpkg-deb -c "$deb" | awk '{print $6}' >"$work/files"
for f in ./usr/bin/kiln ./usr/bin/kiln-scheduler ./usr/bin/kiln-worker ./usr/bin/kiln-rsh \
         ./usr/bin/kiln-train ./usr/bin/kiln-predict ./etc/kiln/scheduler.toml \
         ./etc/kiln/worker.toml ./lib/systemd/system/kiln-scheduler.service \
         ./lib/systemd/system/kiln-worker.service ./usr/share/doc/kiln/operations.md \
         ./usr/share/doc/kiln/api.md; do
  grep -qx "$f" "$work/files" || fail "the package lacks $f"
done
dpkg-deb -f "$deb" Depends | grep -q "libjs-chart.js" || fail "the package does not depend on libjs-chart.js"
dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -q "conffiles" || fail "no conffiles"

root="$work/root"
dpkg-deb -x "$deb" "$root"
# What verify needs from a system besides the package: the targets the units name, and kill.
mkdir -p "$root/bin" "$root/usr/lib/systemd/system"
cp /bin/kill "$root/bin/"
cp -r /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/"
verify="$(systemd-analyze verify --root="$root" /lib/systemd/system/kiln-scheduler.service \
          /lib/systemd/system/kiln-worker.service 2>&1)" || fail "systemd-analyze verify: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify warns: $verify"
grep -q '^Type=notify' "$root/lib/systemd/system/kiln-scheduler.service" || fail "scheduler unit not Type=notify"
grep -q '^Delegate=yes' "$root/lib/systemd/system/kiln-worker.service" || fail "worker unit without Delegate=yes"

# The packaged example configs pass `check` (flags for what this machine needs win).
"$root/usr/bin/kiln-scheduler" --config "$root/etc/kiln/scheduler.toml" \
    --state-dir "$work/state" check >/dev/null || fail "the packaged scheduler.toml fails check"
# The packaged worker.toml names /etc/kiln/server.pub, a copy the admin makes: a real key here.
"$root/usr/bin/kiln-scheduler" --state-dir "$work/keys" key show >/dev/null
"$root/usr/bin/kiln-worker" --config "$root/etc/kiln/worker.toml" --work-dir "$work/w" \
    --server-key "$work/keys/server.pub" check >/dev/null || fail "the packaged worker.toml fails check"
! "$root/usr/bin/kiln-worker" --config "$root/etc/kiln/worker.toml" --work-dir "$work/w" \
    --server-key "$work/none.pub" check >/dev/null 2>&1 || fail "check took a missing server key"
dpkg-deb --ctrl-tarfile "$deb" | tar -t | grep -q "prerm" || fail "no prerm"

# Start both as their units do (ExecStart with the packaged config), with a NOTIFY_SOCKET that
# this test reads, and send what systemctl reload and stop send.
/usr/bin/python3 - "$root" "$work" <<'PY'
import os, signal, socket, subprocess, sys, time
root, work = sys.argv[1], sys.argv[2]
sock_path = os.path.join(work, "notify")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
sock.settimeout(1.0)
env = dict(os.environ, NOTIFY_SOCKET=sock_path)

def expect(state, proc, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            message = sock.recv(4096).decode()
        except socket.timeout:
            if proc.poll() is not None:
                sys.exit(f"exited with {proc.returncode} before sending {state}")
            continue
        if state in message.split("\n"):
            return message
    sys.exit(f"no {state} within {timeout} s")

scheduler = subprocess.Popen(
    [root + "/usr/bin/kiln-scheduler", "--config", root + "/etc/kiln/scheduler.toml",
     "--state-dir", work + "/state", "--listen", "tcp://127.0.0.1:*", "--http", "127.0.0.1:0"],
    env=env, stderr=open(work + "/scheduler.log", "w"))
expect("READY=1", scheduler)
scheduler.send_signal(signal.SIGHUP)
expect("RELOADING=1", scheduler)
expect("READY=1", scheduler)
endpoint = open(work + "/state/endpoint").read().strip()
worker = subprocess.Popen(
    [root + "/usr/bin/kiln-worker", "--config", root + "/etc/kiln/worker.toml",
     "--scheduler", endpoint, "--server-key", work + "/state/server.pub",
     "--work-dir", work + "/w", "--slots", "1"],
    env=env, stderr=open(work + "/worker.log", "w"))
expect("READY=1", worker)
worker.send_signal(signal.SIGHUP)
expect("RELOADING=1", worker)
expect("READY=1", worker)
log = open(work + "/worker.log").read()
assert "reload refused" not in log, "the worker refused its own packaged config on reload: " + log
worker.send_signal(signal.SIGTERM)
expect("STOPPING=1", worker)
assert worker.wait(30) == 0, "the worker did not exit 0 on SIGTERM"
scheduler.send_signal(signal.SIGTERM)
expect("STOPPING=1", scheduler)
assert scheduler.wait(30) == 0, "the scheduler did not exit 0 on SIGTERM"
print("package_check: daemons notified READY, RELOADING and STOPPING")
PY
echo "package_check: OK ($deb)"
