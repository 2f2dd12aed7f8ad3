#!/usr/bin/env bash
# The main job end to end on this machine: set up and build if needed, start a local scheduler
# (SQLite state in a fresh directory) and one worker with 2 slots, submit the Fashion-MNIST MLP,
# follow it live to the end, print its final test accuracy and its checkpoints, stop both daemons.
#   KILN_QUICKSTART_JOB   job spec to submit (default: configs/jobs/fashion-mnist-mlp.json)
#   KILN_QUICKSTART_DIR   where state, logs and run dirs go (default: a new /tmp/kiln-quickstart-*)
#   KILN_QUICKSTART_KEEP  1: leave the scheduler and worker running at the end and print the
#                         export line that points the kiln CLI at them (docs/operations.md)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start_time=$(date +%s)
"$repo/scripts/setup.sh"
bin="${KILN_BUILD_DIR:-$repo/build}"
job_spec="${KILN_QUICKSTART_JOB:-$repo/configs/jobs/fashion-mnist-mlp.json}"
dir="${KILN_QUICKSTART_DIR:-$(mktemp -d /tmp/kiln-quickstart-XXXXXX)}"
mkdir -p "$dir"

scheduler_pid="" worker_pid=""
stop_daemons() {
  [ "${KILN_QUICKSTART_KEEP:-0}" = 1 ] && [ "${status:-1}" = 0 ] && return 0
  [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true
  [ -n "$scheduler_pid" ] && kill -TERM "$scheduler_pid" 2>/dev/null && wait "$scheduler_pid" 2>/dev/null || true
}
trap stop_daemons EXIT

"$bin/kiln-scheduler" --listen 'tcp://127.0.0.1:*' --state-dir "$dir/state" \
  >"$dir/scheduler.log" 2>&1 &
scheduler_pid=$!
for _ in $(seq 100); do [ -s "$dir/state/endpoint" ] && break; sleep 0.1; done
[ -s "$dir/state/endpoint" ] || { echo "quickstart: scheduler did not start:"; cat "$dir/scheduler.log"; exit 1; }
export KILN_SCHEDULER="$(cat "$dir/state/endpoint")"
echo "quickstart: scheduler on $KILN_SCHEDULER, state in $dir/state"
echo "quickstart: scheduler key $(cat "$dir/state/server.pub") (every connection is CURVE-encrypted)"

# Security stays on: an admin user for you, whose token the CLI reads from a 0600 file, and the
# worker admitted by the cluster key in the state dir.
"$bin/kiln-scheduler" --state-dir "$dir/state" user add "$(id -un)" --admin --allow-root \
  --credentials "$dir/credentials.json"
export KILN_CREDENTIALS="$dir/credentials.json"
"$bin/kiln-worker" --name "$(hostname)-local" --slots 2 --work-dir "$dir/work" \
  --server-key "$dir/state/server.pub" --key-file "$dir/state/worker-cluster.key" \
  >"$dir/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 100); do "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done
"$bin/kiln" nodes

echo "quickstart: submitting $job_spec and following it to the end"
status=0
job=$("$bin/kiln" submit --follow "$job_spec") || status=$?
[ -n "$job" ] || { echo "quickstart: submit failed"; exit 1; }
echo
"$bin/kiln" logs "$job" | grep -E "training|done:|finished" || true
echo
state=$("$bin/kiln" show "$job" --json | grep -m1 '"state"' | sed 's/.*"state": "\(.*\)".*/\1/')
if [ "$status" -ne 0 ] || [ "$state" != "COMPLETED" ]; then
  echo "quickstart: job $job ended $state; see kiln show $job, $dir/scheduler.log, $dir/worker.log"
  status=1
else
  echo "final test accuracy: $("$bin/kiln" show "$job" --metric test_accuracy)"
fi
echo "checkpoints of job $job:"
"$bin/kiln" ckpt ls "$job"
echo "quickstart: finished in $(( $(date +%s) - start_time )) s (state and logs in $dir)"
if [ "${KILN_QUICKSTART_KEEP:-0}" = 1 ] && [ "$status" = 0 ]; then
  echo "quickstart: the scheduler (pid $scheduler_pid) and worker (pid $worker_pid) keep running;"
  echo "  point the CLI at them:  export PATH=$(printf %q "$bin"):\$PATH KILN_SCHEDULER=$(printf %q "$KILN_SCHEDULER") KILN_CREDENTIALS=$(printf %q "$KILN_CREDENTIALS") STATE_DIR=$(printf %q "$dir/state")"
  echo "  stop them:              kill $worker_pid $scheduler_pid"
fi
exit $status
