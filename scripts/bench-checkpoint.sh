#!/usr/bin/env bash
# Checkpoint transfer benchmark on a local scheduler + worker (loopback):
#  (a) upload throughput of a 100 MB checkpoint through the agent's uploader
#      (baseline: writing 100 MB to the same disk with fsync);
#  (b) training throughput of a Fashion-MNIST job while 100 MB checkpoints upload
#      (baseline: the same job with no upload running);
#  (c) `kiln ckpt pull` throughput of the 100 MB checkpoint (baseline: cp of the stored blob);
#  (d) time from submit to the first training step of a job resumed from a stored checkpoint its
#      node does not have (baseline: the same job started fresh).
# Ends with one JSON line per measure.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
bin="${KILN_BUILD_DIR:-$repo/build}"
dir=$(mktemp -d /tmp/kiln-bench-ckpt-XXXXXX)
MB=${KILN_BENCH_MB:-100}
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

"$bin/kiln-scheduler" --listen 'tcp://127.0.0.1:*' --state-dir "$dir/state" >"$dir/scheduler.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$dir/state/endpoint" ] && break; sleep 0.1; done
export KILN_SCHEDULER="$(cat "$dir/state/endpoint")"
"$bin/kiln-scheduler" --state-dir "$dir/state" user add bench --admin --unix-user "$(id -un)" --allow-root \
  --credentials "$dir/bench.json" >/dev/null
export KILN_CREDENTIALS="$dir/bench.json"
keys=(--server-key "$dir/state/server.pub" --key-file "$dir/state/worker-cluster.key")
"$bin/kiln-worker" --name bench --slots 2 --work-dir "$dir/work" "${keys[@]}" >"$dir/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$bin/kiln" nodes 2>/dev/null | grep -q " UP " && break; sleep 0.1; done

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
wait_done() { while true; do s=$("$bin/kiln" show "$1" --json | grep -m1 '"state"' | sed 's/.*: "\(.*\)".*/\1/'); case $s in COMPLETED) return 0;; FAILED|CANCELLED) echo "job $1 $s" >&2; return 1;; esac; sleep 0.2; done; }
train_seconds() { "$bin/kiln" logs "$1" | sed -n 's/.*done: .*(\([0-9.]*\) s, evaluation [0-9.]* s)$/\1/p' | awk '{s+=$1} END {printf "%.3f", s}'; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json() { # bench measure value unit baseline target met
  awk -v b="$1" -v m="$2" -v v="$3" -v u="$4" -v base="$5" -v t="$6" -v met="$7" 'BEGIN {
    printf "{\"bench\": \"%s\", \"measure\": \"%s\", \"value\": %s, \"unit\": \"%s\", \"baseline\": %s, \"ratio\": %.3f, \"target\": %s, \"met\": %s}\n",
      b, m, v, u, base, (base > 0 ? v / base : 0), t, met }'; }

# A small job that owns the uploaded benchmark checkpoints.
host=$("$bin/kiln" submit <(sed 's/"epochs": 5/"epochs": 1/' "$repo/configs/jobs/synthetic-binary-mlp.json"))
wait_done "$host"

# (a) upload throughput
disk=$(dd if=/dev/zero of="$dir/dd.bin" bs=1M count="$MB" conv=fsync 2>&1 | awk '/copied/ {print $(NF-1) * ($NF == "GB/s" ? 1000 : 1)}')
rm -f "$dir/dd.bin"
"$bin/kiln-bench-upload" --scheduler "$KILN_SCHEDULER" "${keys[@]}" --job "$host" --mb "$MB" --repeat 3 --dir "$dir" | tee "$dir/upload.txt"
upload=$(sed -n 's/.*= \([0-9.]*\) MB\/s/\1/p' "$dir/upload.txt" | median)

# (b) training throughput with and without uploads running
spec="$dir/train.json"
sed 's/"epochs": 5/"epochs": 3/; s/"every_steps": 500/"every_steps": 100000/' "$repo/configs/jobs/fashion-mnist-mlp.json" >"$spec"
alone=$("$bin/kiln" submit "$spec"); wait_done "$alone"
"$bin/kiln-bench-upload" --scheduler "$KILN_SCHEDULER" "${keys[@]}" --job "$host" --mb "$MB" --repeat 1000 --dir "$dir" >"$dir/background.txt" 2>&1 &
uploader=$!
sleep 1
loaded=$("$bin/kiln" submit "$spec"); wait_done "$loaded"
kill "$uploader" 2>/dev/null || true; wait "$uploader" 2>/dev/null || true
uploads_during=$(grep -c "MB/s" "$dir/background.txt" || true)
# The same with the upload path at the lowest CPU priority (as when the scheduler runs on a head
# node and the agent's uploads yield to training): on this 2-core machine the two ranks already
# use both cores, so anything else that runs takes time from them.
renice -n 19 -p "${pids[0]}" >/dev/null
nice -n 19 "$bin/kiln-bench-upload" --scheduler "$KILN_SCHEDULER" "${keys[@]}" --job "$host" --mb "$MB" --repeat 1000 --dir "$dir" >"$dir/background-niced.txt" 2>&1 &
uploader=$!
sleep 1
niced=$("$bin/kiln" submit "$spec"); wait_done "$niced"
kill "$uploader" 2>/dev/null || true; wait "$uploader" 2>/dev/null || true
renice -n 0 -p "${pids[0]}" >/dev/null
uploads_niced=$(grep -c "MB/s" "$dir/background-niced.txt" || true)
t_alone=$(train_seconds "$alone"); t_loaded=$(train_seconds "$loaded"); t_niced=$(train_seconds "$niced")
echo "training: alone ${t_alone} s; with back-to-back ${MB} MB uploads ${t_loaded} s (${uploads_during} uploads done meanwhile); with them at nice 19 ${t_niced} s (${uploads_niced} uploads)"

# (c) pull throughput (the host job's latest checkpoint is the last 100 MB upload)
t0=$(now); pulled=$("$bin/kiln" ckpt pull "$host" -o "$dir/pulled" 2>/dev/null); t1=$(now)
pull_rate=$(awk -v t="$(elapsed "$t0" "$t1")" -v mb="$MB" 'BEGIN {printf "%.1f", mb * 1.048576 / t}')
sha=$(sha256sum "$pulled" | cut -c1-64)
t0=$(now); cp "$dir/state/checkpoints/$sha" "$dir/copy.bin"; sync "$dir/copy.bin"; t1=$(now)
cp_rate=$(awk -v t="$(elapsed "$t0" "$t1")" -v mb="$MB" 'BEGIN {printf "%.1f", mb * 1.048576 / t}')
rm -f "$dir/copy.bin"

# (d) resume on a node without the checkpoint vs fresh start: submit -> first step reported
wait_idle() { while "$bin/kiln" nodes --json | grep -q '"used_slots": [1-9]'; do sleep 0.05; done; }
first_step_after() { # job id, step to exceed
  while true; do s=$("$bin/kiln" show "$1" --metric step 2>/dev/null || echo -1); [ "$s" -gt "$2" ] && return 0; sleep 0.02; done; }
t0=$(now); fresh=$("$bin/kiln" submit "$spec"); first_step_after "$fresh" 0; t1=$(now)
"$bin/kiln" cancel "$fresh" >/dev/null
t_fresh=$(elapsed "$t0" "$t1")
wait_idle
sed 's/"epochs": 3/"epochs": 5/' "$spec" >"$dir/longer.json"  # continues past the 1404 steps done
t0=$(now); resumed=$("$bin/kiln" submit "$dir/longer.json" --resume-from "$alone"); first_step_after "$resumed" 1404; t1=$(now)
"$bin/kiln" cancel "$resumed" >/dev/null
t_resume=$(elapsed "$t0" "$t1")

echo
json checkpoint upload_throughput "$upload" MB/s "$disk" 200 "$(awk -v v="$upload" 'BEGIN {print (v >= 200) ? "true" : "false"}')"
slow=$(awk -v a="$t_alone" -v b="$t_loaded" 'BEGIN {printf "%.3f", b / a}')
json checkpoint training_time_while_uploading "$t_loaded" s "$t_alone" 1.05 "$(awk -v r="$slow" 'BEGIN {print (r <= 1.05) ? "true" : "false"}')"
slow_niced=$(awk -v a="$t_alone" -v b="$t_niced" 'BEGIN {printf "%.3f", b / a}')
json checkpoint training_time_while_uploading_niced "$t_niced" s "$t_alone" 1.05 "$(awk -v r="$slow_niced" 'BEGIN {print (r <= 1.05) ? "true" : "false"}')"
json checkpoint pull_throughput "$pull_rate" MB/s "$cp_rate" null null
json checkpoint resume_to_first_step "$t_resume" s "$t_fresh" null null
