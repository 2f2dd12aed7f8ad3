#!/usr/bin/env bash
# Sweep benchmark (issue 17): Fashion-MNIST MLP widths x learning rates, 12 trials, 2 at once,
# on one node. The full grid (every trial to its last epoch) is the baseline, run in this same
# invocation; ASHA (min_epochs 1, reduction_factor 3) is measured against it:
#  - the best test accuracy found (target: ASHA within 0.3 points of the grid's best);
#  - the rank-seconds used, sum over trials of (finished - started) x ranks (target: at most half).
# KILN_BENCH_EPOCHS sets the trials' epochs (default 5). Ends with one JSON line per measure.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
epochs="${KILN_BENCH_EPOCHS:-5}"
dir=$(mktemp -d /tmp/kiln-bench-sweep-XXXXXX)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
pids=()
results=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
source "$repo/scripts/bench/lib.sh"  # emit, field, start_scheduler, stop_scheduler

start_scheduler sweep
"$bin/kiln-worker" --scheduler "$endpoint" --name bench --slots 2 --work-dir "$dir/work" \
  --server-key "$state/server.pub" --key-file "$state/worker-cluster.key" >"$dir/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  KILN_SCHEDULER="$endpoint" "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break
  sleep 0.1
done
kiln() { KILN_SCHEDULER="$endpoint" "$bin/kiln" "$@"; }

# run_sweep NAME asha|grid: submits the sweep, waits for it, prints "BEST RANK_SECONDS WALL_S".
run_sweep() {
  local name=$1 mode=$2 id t0 t1
  python3 - "$repo/configs/sweeps/fashion-mnist-mlp.json" "$repo/configs/jobs/fashion-mnist-mlp.json" \
    "$dir/$name.json" "$mode" "$epochs" <<'PY'
import json, sys
sweep = json.load(open(sys.argv[1]))
base = json.load(open(sys.argv[2]))
base["resources"] = {"ranks": 1, "threads_per_rank": 1}
base["train"]["epochs"] = int(sys.argv[5])
base["checkpoint"] = {"keep_last": 1}
base["max_retries"] = 0
sweep["base"] = base
if sys.argv[4] == "grid":
    sweep.pop("early_stopping", None)
json.dump(sweep, open(sys.argv[3], "w"))
PY
  t0=$(date +%s.%N)
  id=$(kiln sweep "$dir/$name.json")
  while [ "$(kiln show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = PENDING ]; do
    sleep 1
  done
  t1=$(date +%s.%N)
  kiln sweep show "$id" >&2
  kiln sweep show "$id" --json >"$dir/$name.board"
  kiln queue --all --json >"$dir/$name.jobs"
  python3 - "$dir/$name.board" "$dir/$name.jobs" "$id" "$t0" "$t1" <<'PY'
import json, sys
board = json.load(open(sys.argv[1]))
jobs = json.load(open(sys.argv[2]))
sweep = int(sys.argv[3])
used = sum((j["finished_at"] - j["started_at"]) / 1000.0 * j["ranks"]
           for j in jobs if j.get("array_job") == sweep and j["started_at"] > 0)
print(board["best"]["best"], round(used, 1), round(float(sys.argv[5]) - float(sys.argv[4]), 1))
PY
}

echo "== full grid: 12 trials x $epochs epochs"
read -r grid_best grid_used grid_wall < <(run_sweep grid grid)
echo "grid: best $grid_best, $grid_used rank-seconds, $grid_wall s"
echo "== ASHA"
read -r asha_best asha_used asha_wall < <(run_sweep asha asha)
echo "ASHA: best $asha_best, $asha_used rank-seconds, $asha_wall s"
emit sweep best_test_accuracy_asha "$asha_best" accuracy "$grid_best" \
  "$(awk -v b="$grid_best" 'BEGIN {print b - 0.003}')" higher
emit sweep rank_seconds_asha "$asha_used" rank-s "$grid_used" \
  "$(awk -v b="$grid_used" 'BEGIN {print b / 2}')" lower
printf '%s\n' "${results[@]}"
