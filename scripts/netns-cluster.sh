#!/usr/bin/env bash
# A real multi-host kiln cluster on one machine: network namespaces joined by veth pairs to a
# bridge that lives in a namespace of its own, with addresses in 10.77.0.0/24 that exist only
# inside the namespaces (nothing is added to the host's own network). Host 0 runs the scheduler
# (10.77.0.1); hosts 1..N each run a worker (10.77.0.N+1) in their own UTS namespace, so every
# host has its own hostname (kiln-hN) as real machines do. Node names carry the cluster's id
# (kiln-ID-hN): all the namespaces share one /proc, and an agent finds (and kills) the leftover
# processes of its node by name, so two clusters on one machine must not share names. Needs root
# (ip netns, unshare).
#
#   netns-cluster.sh check                 exit 0 when namespaces can be made here
#   netns-cluster.sh up DIR [N] [SLOTS]    start the scheduler and N workers (default 2, 2 slots)
#   netns-cluster.sh kiln DIR ARGS...      run the kiln CLI as the admin, from host 0
#   netns-cluster.sh kill-host DIR N       SIGKILL every process of host N (a machine dying)
#   netns-cluster.sh start-worker DIR N    (re)start host N's worker
#   netns-cluster.sh link DIR N down|up    cut host N off the network, or join it again
#   netns-cluster.sh kill-scheduler DIR    SIGKILL the scheduler; start-scheduler DIR starts it
#   netns-cluster.sh ns DIR N              print host N's network namespace
#   netns-cluster.sh down DIR              stop everything and delete the namespaces
# State, logs and work dirs go under DIR. KILN_BUILD_DIR picks the binaries (default build/);
# WORKER_TIMEOUT (default 3) is the scheduler's --worker-timeout in seconds, WORKER_LEASE (default
# 5 x WORKER_TIMEOUT) its --worker-lease.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${KILN_BUILD_DIR:-$repo/build}"
command="${1:-}"
shift || true

ns_id() { printf '%s' "$1" | md5sum | cut -c1-5; }    # short, so interface names fit in 15
ns() { echo "kiln-$(ns_id "$1")-h$2"; }
bridge_ns() { echo "kiln-$(ns_id "$1")-br"; }
address() { echo "10.77.0.$(($1 + 1))"; }
endpoint() { echo "tcp://$(address 0):7070"; }

start_worker() {  # start_worker DIR I
  local dir=$1 i=$2 slots
  slots=$(cat "$dir/slots")
  mkdir -p "$dir/h$i"
  ip netns exec "$(ns "$dir" "$i")" unshare --uts sh -c "hostname kiln-h$i; exec \"\$0\" \"\$@\"" \
    "$bin/kiln-worker" --scheduler "$(endpoint)" --name "kiln-$(ns_id "$dir")-h$i" --slots "$slots" \
    --address "$(address "$i")" --work-dir "$dir/h$i/work" --kill-grace 3 --no-pin-cpus \
    --server-key "$dir/state/server.pub" --key-file "$dir/state/worker-cluster.key" \
    >>"$dir/h$i/worker.log" 2>&1 &
  echo $! >"$dir/h$i/pid"
}

start_scheduler() {  # start_scheduler DIR: on host 0, waits until it listens
  local dir=$1
  rm -f "$dir/state/endpoint"
  ip netns exec "$(ns "$dir" 0)" "$bin/kiln-scheduler" --listen "$(endpoint)" \
    --state-dir "$dir/state" --worker-timeout "${WORKER_TIMEOUT:-3}" \
    --worker-lease "${WORKER_LEASE:-$((5 * ${WORKER_TIMEOUT:-3}))}" >>"$dir/scheduler.log" 2>&1 &
  echo $! >"$dir/scheduler.pid"
  for _ in $(seq 100); do [ -s "$dir/state/endpoint" ] && break; sleep 0.1; done
  [ -s "$dir/state/endpoint" ] || { echo "scheduler did not start"; cat "$dir/scheduler.log"; exit 1; }
}

case "$command" in
  check)
    probe="kiln-probe-$$"
    ip netns add "$probe" 2>/dev/null || { echo "cannot create network namespaces here"; exit 1; }
    ip netns del "$probe"
    command -v unshare >/dev/null || { echo "unshare is missing"; exit 1; }
    ;;
  up)
    dir=$1 workers=${2:-2} slots=${3:-2}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    echo "$workers" >"$dir/workers"
    echo "$slots" >"$dir/slots"
    br=$(bridge_ns "$dir")
    id=$(ns_id "$dir")
    ip netns add "$br"
    ip netns exec "$br" ip link set lo up
    ip netns exec "$br" ip link add br0 type bridge
    ip netns exec "$br" ip link set br0 up
    for i in $(seq 0 "$workers"); do
      host=$(ns "$dir" "$i")
      ip netns add "$host"
      ip netns exec "$host" ip link set lo up
      ip link add "k${id}v$i" type veth peer name "k${id}p$i"
      ip link set "k${id}v$i" netns "$host"
      ip link set "k${id}p$i" netns "$br"
      ip netns exec "$br" ip link set "k${id}p$i" master br0
      ip netns exec "$br" ip link set "k${id}p$i" up
      ip netns exec "$host" ip addr add "$(address "$i")/24" dev "k${id}v$i"
      ip netns exec "$host" ip link set "k${id}v$i" up
    done
    start_scheduler "$dir"
    "$bin/kiln-scheduler" --state-dir "$dir/state" user add admin --admin --unix-user "$(id -un)" --allow-root \
      --credentials "$dir/admin.json" --scheduler "$(endpoint)" >/dev/null
    for i in $(seq 1 "$workers"); do start_worker "$dir" "$i"; done
    for _ in $(seq 200); do
      up=$(ip netns exec "$(ns "$dir" 0)" "$bin/kiln" --credentials "$dir/admin.json" nodes 2>/dev/null \
           | grep -c " UP " || true)
      [ "$up" -ge "$workers" ] && break
      sleep 0.1
    done
    [ "$up" -ge "$workers" ] || { echo "only $up of $workers workers came up"; exit 1; }
    echo "netns cluster up: scheduler $(endpoint), $workers workers x $slots slots, state in $dir"
    ;;
  kiln)
    dir=$(cd "$1" && pwd)
    shift
    exec ip netns exec "$(ns "$dir" 0)" "$bin/kiln" --credentials "$dir/admin.json" "$@"
    ;;
  kill-host)
    dir=$(cd "$1" && pwd)
    for pid in $(ip netns pids "$(ns "$dir" "$2")"); do kill -KILL "$pid" 2>/dev/null || true; done
    ;;
  start-worker)
    dir=$(cd "$1" && pwd)
    start_worker "$dir" "$2"
    ;;
  ns)
    dir=$(cd "$1" && pwd)
    ns "$dir" "$2"
    ;;
  kill-scheduler)
    dir=$(cd "$1" && pwd)
    kill -KILL "$(cat "$dir/scheduler.pid")" 2>/dev/null || true
    ;;
  start-scheduler)
    dir=$(cd "$1" && pwd)
    start_scheduler "$dir"
    ;;
  link)
    dir=$(cd "$1" && pwd)
    ip netns exec "$(bridge_ns "$dir")" ip link set "k$(ns_id "$dir")p$2" "$3"
    ;;
  down)
    dir=$(cd "$1" && pwd)
    workers=$(cat "$dir/workers" 2>/dev/null || echo 0)
    for i in $(seq 0 "$workers"); do
      host=$(ns "$dir" "$i")
      for pid in $(ip netns pids "$host" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    done
    sleep 0.5
    for i in $(seq 0 "$workers"); do
      host=$(ns "$dir" "$i")
      for pid in $(ip netns pids "$host" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
      ip netns del "$host" 2>/dev/null || true
    done
    ip netns del "$(bridge_ns "$dir")" 2>/dev/null || true
    ;;
  *)
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
