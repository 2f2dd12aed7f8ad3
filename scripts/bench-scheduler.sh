#!/usr/bin/env bash
# Scheduler benchmarks (issue 4), each with a baseline run in this same invocation:
#  (a) one policy pass, 10,000 nodes and 100,000 pending jobs (steady state and cold), against a
#      naive first-fit pass; and a long simulation with invariant checks (kiln-bench-scheduler-pass);
#  (b) durable submits/s from 8 concurrent clients (32 in flight each) against a real daemon on
#      loopback (baseline: the same clients sending a request that writes nothing);
#  (c) submits/s with one `kiln submit` process per job, against Slurm's `sbatch` on a one-node
#      Slurm started here (scripts/bench/slurm_local.sh; installs slurm-wlm and munge);
#  (d) submit -> every rank running on an idle node, p50 and p99 (baseline: bare `mpirun -np 2`);
#  (e) scheduler memory (VmHWM) with 100,000 pending jobs (baseline: the idle daemon);
#  (f) submit -> every rank running with uid mapping on (a root agent starting the job as the
#      account kiln-bench) against off (the agent itself runs as kiln-bench and starts it as
#      itself: no lookup, chown, clean environment or uid switch). Creates the account (useradd);
#  (g) the agent's CPU use while 8 ranks of one job run, with the memory watchdog (memory_per_rank
#      set) against without: the watchdog's cost (target: under 1 % of one core).
# KILN_BENCH_QUICK=1 shrinks the sizes. KILN_BENCH_SLURM=0 skips (c)'s Slurm side.
# KILN_BENCH_PARTS="a b c d" picks parts ((e) runs with (b)).
# Ends with one JSON line per measure.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
quick="${KILN_BENCH_QUICK:-0}"
parts="${KILN_BENCH_PARTS:-a b c d f g}"
dir=$(mktemp -d /tmp/kiln-bench-sched-XXXXXX)
chmod 755 "$dir"  # the Slurm side runs munged as the munge user, under this folder
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
pids=()
results=()
slurm_started=0
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$slurm_started" = 1 ]; then slurm_stop || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

source "$repo/scripts/bench/lib.sh"  # emit, field, start_scheduler, stop_scheduler
rss_mb() { awk -v k="$2" '$1 == k":" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

spec="$dir/spec.json"
python3 - "$repo/configs/jobs/synthetic-binary-mlp.json" "$spec" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["resources"] = {"ranks": 2}
spec["train"]["epochs"] = 100000   # runs until cancelled (latency) or never starts (throughput)
json.dump(spec, open(sys.argv[2], "w"))
PY

part() { [[ " $parts " == *" $1 "* ]]; }

if part a; then
echo "== (a) policy pass and simulation"
pass_args=()
[ "$quick" = 1 ] && pass_args+=(--quick)
"$bin/kiln-bench-scheduler-pass" "${pass_args[@]}" | tee "$dir/pass.out"
while IFS= read -r line; do results+=("$line"); done < <(grep '^{"bench"' "$dir/pass.out")
fi

if part b; then
echo "== (b) durable submits/s, 8 clients, and (e) memory with 100,000 pending"
per_client=$([ "$quick" = 1 ] && echo 500 || echo 2500)
start_scheduler throughput
idle_rss=$(rss_mb "$sched_pid" VmRSS)
noop=$("$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" --mode noop --spec "$spec" --jobs $((per_client * 2)))
submit=$("$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" --mode submit --spec "$spec" --jobs "$per_client")
echo "no-op requests: $noop"
echo "submits:        $submit"
emit scheduler submits_per_s_8_clients "$(field "$submit" per_second)" "submits/s" \
  "$(field "$noop" per_second)" 20000 higher
total=$((per_client * 8))
target_pending=$([ "$quick" = 1 ] && echo 10000 || echo 100000)
while [ "$total" -lt "$target_pending" ]; do
  "$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" --mode submit --spec "$spec" --jobs 2500 >/dev/null
  total=$((total + 20000))
done
sleep 2  # a few scheduling passes over the full queue
peak=$(rss_mb "$sched_pid" VmHWM)
echo "scheduler with $total pending jobs: VmHWM $peak MB (idle: $idle_rss MB)"
emit scheduler memory_mb_${total}_pending "$peak" MB "$idle_rss" 200 lower
stop_scheduler
fi

if part c; then
echo "== (c) one kiln submit process per job vs sbatch"
n_submits=$([ "$quick" = 1 ] && echo 100 || echo 400)
start_scheduler cli
kiln_rate() {  # kiln_rate N P: jobs/s with P loops, one kiln submit per job
  local n=$1 p=$2 t0 t1
  t0=$(date +%s.%N)
  for i in $(seq "$p"); do
    ( for _ in $(seq $((n / p))); do
        KILN_SCHEDULER="$endpoint" "$bin/kiln" submit "$spec" >/dev/null
      done ) &
  done
  wait
  t1=$(date +%s.%N)
  awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n / (b - a)}'
}
kiln_submit_rate=$(kiln_rate "$n_submits" 8)
echo "kiln submit: $kiln_submit_rate jobs/s"
stop_scheduler
if [ "${KILN_BENCH_SLURM:-1}" = 1 ]; then
  # shellcheck source=bench/slurm_local.sh
  source "$repo/scripts/bench/slurm_local.sh"
  slurm_install >/dev/null
  slurm_start "$dir/slurm" >/dev/null
  slurm_started=1
  sbatch_rate=$(slurm_submit_rate "$n_submits" 8)
  slurm_stop >/dev/null
  slurm_started=0
  echo "sbatch:      $sbatch_rate jobs/s"
  emit scheduler cli_submits_per_s_vs_sbatch "$kiln_submit_rate" "jobs/s" "$sbatch_rate" \
    "$(awk -v s="$sbatch_rate" 'BEGIN {print 10 * s}')" higher
fi
fi

if part d; then
echo "== (d) submit -> all ranks running, idle node"
start_scheduler latency
"$bin/kiln-worker" --scheduler "$endpoint" --name bench --slots 2 --work-dir "$dir/work" \
  --server-key "$state/server.pub" --key-file "$state/worker-cluster.key" \
  >"$dir/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do KILN_SCHEDULER="$endpoint" "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done
samples=$([ "$quick" = 1 ] && echo 5 || echo 20)
bare=()
for _ in $(seq "$samples"); do
  t0=$(date +%s%N)
  mpirun -np 2 --oversubscribe --bind-to none --mca btl self,vader,tcp true
  bare+=($(( ($(date +%s%N) - t0) / 1000000 )))
done
bare_p50=$(printf '%s\n' "${bare[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
latency=$("$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" --mode latency --spec "$spec" \
  --samples "$samples" --work-dir "$dir/work")
echo "kiln: $latency; bare mpirun -np 2 true: p50 $bare_p50 ms"
emit scheduler submit_to_ranks_p50_ms "$(field "$latency" ranks_p50_ms)" ms "$bare_p50" 50 lower
emit scheduler submit_to_ranks_p99_ms "$(field "$latency" ranks_p99_ms)" ms "$bare_p50" 200 lower
emit scheduler submit_to_mpirun_p50_ms "$(field "$latency" launched_p50_ms)" ms "$bare_p50" 50 lower
fi

if part f; then
echo "== (f) submit -> all ranks running, uid mapping on vs off"
id -u kiln-bench >/dev/null 2>&1 || useradd --no-create-home --shell /usr/sbin/nologin kiln-bench
samples=$([ "$quick" = 1 ] && echo 5 || echo 20)
map_latency() {  # map_latency NAME on|off: p50 ms of submit -> ranks running
  local name=$1 mode=$2 work="$dir/work-$1" wpid
  start_scheduler "$name"
  "$bin/kiln-scheduler" --state-dir "$state" user set bench --unix-user kiln-bench >/dev/null
  mkdir -p "$work"
  chmod 755 "$dir"
  local key="$state/worker-cluster.key" pub="$state/server.pub"
  if [ "$mode" = off ]; then  # the agent is kiln-bench: keys and a work dir of its own
    cp "$state/worker-cluster.key" "$work/cluster.key"
    cp "$state/server.pub" "$work/server.pub"
    chown -R kiln-bench: "$work"
    key="$work/cluster.key" pub="$work/server.pub"
    setpriv --reuid kiln-bench --regid kiln-bench --init-groups env -u OMPI_ALLOW_RUN_AS_ROOT \
      -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM HOME=/ \
      "$bin/kiln-worker" --scheduler "$endpoint" --name "$name" --slots 2 --work-dir "$work" \
      --server-key "$pub" --key-file "$key" >"$dir/$name-worker.log" 2>&1 &
  else
    "$bin/kiln-worker" --scheduler "$endpoint" --name "$name" --slots 2 --work-dir "$work" \
      --server-key "$state/server.pub" --key-file "$key" >"$dir/$name-worker.log" 2>&1 &
  fi
  wpid=$!
  pids+=("$wpid")
  for _ in $(seq 100); do KILN_SCHEDULER="$endpoint" "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done
  "$bin/kiln-bench-submit" --credentials "$KILN_CREDENTIALS" --endpoint "$endpoint" --mode latency \
    --spec "$spec" --samples "$samples" --work-dir "$work" | tee "$dir/$name.latency" >&2
  kill -TERM "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  stop_scheduler
}
map_latency map-off off 2>/dev/null
map_latency map-on on 2>/dev/null
off_p50=$(field "$(cat "$dir/map-off.latency")" ranks_p50_ms)
on_p50=$(field "$(cat "$dir/map-on.latency")" ranks_p50_ms)
echo "uid mapping on: p50 $on_p50 ms; off (agent runs as the account): p50 $off_p50 ms"
emit scheduler submit_to_ranks_p50_ms_uid_mapping_on "$on_p50" ms "$off_p50" \
  "$(awk -v b="$off_p50" 'BEGIN {print 1.05 * b}')" lower
fi

if part g; then
echo "== (g) the memory watchdog's CPU cost: the agent with 8 ranks running, with and without memory_per_rank"
window=$([ "$quick" = 1 ] && echo 10 || echo 30)
spec8="$dir/spec8.json"
agent_cpu() {  # agent_cpu NAME MEMORY_PER_RANK|none: the agent's CPU seconds over $window s
  local name=$1 memory=$2 work="$dir/work-$1" wpid id
  start_scheduler "$name"
  mkdir -p "$work"
  "$bin/kiln-worker" --scheduler "$endpoint" --name "$name" --slots 8 --work-dir "$work" \
    --server-key "$state/server.pub" --key-file "$state/worker-cluster.key" >"$dir/$name-worker.log" 2>&1 &
  wpid=$!
  pids+=("$wpid")
  for _ in $(seq 100); do KILN_SCHEDULER="$endpoint" "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done
  python3 - "$spec" "$spec8" "$memory" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["resources"] = {"ranks": 8}
if sys.argv[3] != "none":
    spec["resources"]["memory_per_rank"] = sys.argv[3]
json.dump(spec, open(sys.argv[2], "w"))
PY
  id=$(KILN_SCHEDULER="$endpoint" "$bin/kiln" submit "$spec8")
  for _ in $(seq 600); do
    [ "$(pgrep -c -x kiln-train 2>/dev/null || true)" -ge 8 ] && break
    sleep 0.1
  done
  sleep 5  # past start-up: data generated, first steps taken
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$wpid/stat")
  sleep "$window"
  t1=$(awk '{print $14 + $15}' "/proc/$wpid/stat")
  KILN_SCHEDULER="$endpoint" "$bin/kiln" cancel "$id" >/dev/null || true
  kill -TERM "$wpid" 2>/dev/null || true
  wait "$wpid" 2>/dev/null || true
  stop_scheduler
  awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" -v w="$window" \
    'BEGIN {printf "%.3f\n", 100 * (b - a) / hz / w}'
}
off_cpu=$(agent_cpu watch-off none 2>/dev/null)
on_cpu=$(agent_cpu watch-on 1GiB 2>/dev/null)
echo "agent CPU with 8 ranks: ${on_cpu}% of one core with the memory watchdog, ${off_cpu}% without"
emit scheduler agent_cpu_percent_8_ranks_memory_watchdog "$on_cpu" "% of one core" "$off_cpu" \
  "$(awk -v b="$off_cpu" 'BEGIN {print b + 1}')" lower
fi

printf '%s\n' "${results[@]}"
