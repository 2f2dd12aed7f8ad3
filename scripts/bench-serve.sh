#!/usr/bin/env bash
# Serving benchmarks (issue 15), kiln-serve against a baseline run in this same invocation:
# PyTorch (Debian's python3-torch) serving the same weights behind Python's threaded HTTP server,
# one forward pass per request (scripts/bench/serve_pytorch.py). Both get one intra-op thread.
# Fashion-MNIST MLP (784-256-128-10) and CNN (2 conv + 1024 fc), one replica, loopback HTTP,
# one real test image per request ({"inputs": [{"shape": [1, 784], "datatype": "FP32"}]}):
#  (a) latency at concurrency 1, p50 and p99 (target for the MLP's p99: 1.0 ms, Triton's
#      quick-start `simple` model over HTTP measures 1.03 ms);
#  (b) requests/s at concurrency 32 with dynamic batching (max batch 32, max delay 2 ms), against
#      the Python server at concurrency 32 (target: 3x);
#  (c) time from `kiln deploy` to the first answered inference, against the Python server's
#      start to its first answer;
#  (d) a replica's node dying (its agent and replica killed with SIGKILL; the scheduler runs with
#      --worker-timeout 2) to a replacement answering on another node, against the worker
#      timeout itself (target: 5 s).
# KILN_BENCH_SECONDS (default 5) per load run. Ends with one JSON line per measure.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  [ "$(id -u)" = 0 ] && sudo_cmd="" || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends \
    python3-torch python3-numpy >/dev/null
fi
bin="${KILN_BUILD_DIR:-$repo/build}"
cmake --build "$bin" --target kiln-bench-serve-load >/dev/null
seconds="${KILN_BENCH_SECONDS:-5}"
dir=$(mktemp -d /tmp/kiln-bench-serve-XXXXXX)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
pids=()
results=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  pkill -f "kiln-serve .*$dir" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
source "$repo/scripts/bench/lib.sh"  # emit, field, start_scheduler, stop_scheduler
now() { python3 -c "import time; print(time.time())"; }

start_scheduler serve --worker-timeout 2
export KILN_SCHEDULER="$endpoint"
declare -A worker_pid
start_worker() {  # NAME
  "$bin/kiln-worker" --scheduler "$endpoint" --name "$1" --slots 2 --no-pin-cpus \
    --work-dir "$dir/work-$1" --server-key "$state/server.pub" \
    --key-file "$state/worker-cluster.key" >"$dir/worker-$1.log" 2>&1 &
  worker_pid[$1]=$!
  pids+=("$!")
}
start_worker n1
start_worker n2
for _ in $(seq 100); do [ "$("$bin/kiln" nodes 2>/dev/null | grep -c " UP ")" = 2 ] && break; sleep 0.1; done

echo "== training the models to serve (a few hundred steps each)"
train() {  # NAME CONFIG STEPS -> job id
  python3 - "$repo/configs/jobs/$2" "$dir/$1.json" "$3" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["resources"] = {"ranks": 1}
spec["train"]["max_steps"] = int(sys.argv[3])
spec["checkpoint"] = {"every_steps": 0, "keep_last": 1}
json.dump(spec, open(sys.argv[2], "w"))
PY
  "$bin/kiln" submit --follow "$dir/$1.json" 2>/dev/null | head -1
}
mlp_job=$(train mlp fashion-mnist-mlp.json 300)
cnn_job=$(train cnn fashion-mnist-cnn.json 40)
echo "MLP: job $mlp_job, CNN: job $cnn_job"

python3 - "$dir/body.json" <<'PY'
import gzip, json, sys
with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
    data = f.read()
pixels = [b / 255.0 for b in data[16:16 + 784]]
json.dump({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": pixels}]},
          open(sys.argv[1], "w"))
PY

first_answer() {  # URL PATH -> seconds waited until a 200
  local t0; t0=$(now)
  for _ in $(seq 3000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
            -d @"$dir/body.json" "$1$2" 2>/dev/null)" = 200 ]; then break; fi
    sleep 0.01
  done
  python3 -c "print($(now) - $t0)"
}
load() {  # URL PATH CONCURRENCY
  "$bin/kiln-bench-serve-load" --url "$1" --path "$2" --token "$token" --body-file "$dir/body.json" \
    --concurrency "$3" --seconds "$seconds" --warmup-s 1
}

for model in mlp cnn; do
  job_var="${model}_job"
  echo "== $model: kiln deploy to first answer"
  t0=$(now)
  "$bin/kiln" deploy "${!job_var}" --name "$model" --wait 0 --max-batch 32 --max-delay-ms 2 >/dev/null
  token=$("$bin/kiln" service token "$model")
  url=""
  for _ in $(seq 3000); do
    url=$("$bin/kiln" services "$model" --json | python3 -c "import json,sys; e=json.load(sys.stdin)[0]['endpoints']; print(e[0] if e else '')")
    [ -n "$url" ] && break
    sleep 0.01
  done
  first_answer "$url" "/v2/models/$model/infer" >/dev/null
  deploy_s=$(python3 -c "print($(now) - $t0)")
  kiln_c1=$(load "$url" "/v2/models/$model/infer" 1)
  kiln_c32=$(load "$url" "/v2/models/$model/infer" 32)
  echo "kiln-serve: deploy to first answer ${deploy_s} s; c1 $kiln_c1; c32 $kiln_c32"

  echo "== $model: PyTorch behind Python's threaded HTTP server"
  "$bin/kiln" ckpt pull "${!job_var}" -o "$dir/pulled-$model" >/dev/null 2>&1
  ckpt=$(ls "$dir/pulled-$model"/* | head -1)
  t0=$(now)
  /usr/bin/python3 "$repo/scripts/bench/serve_pytorch.py" "$ckpt" "$model" "$dir/py-$model.port" &
  py=$!
  pids+=("$py")
  for _ in $(seq 3000); do [ -s "$dir/py-$model.port" ] && break; sleep 0.01; done
  py_url="http://127.0.0.1:$(cat "$dir/py-$model.port")"
  first_answer "$py_url" "/v2/models/$model/infer" >/dev/null
  py_start_s=$(python3 -c "print($(now) - $t0)")
  py_c1=$(load "$py_url" "/v2/models/$model/infer" 1)
  py_c32=$(load "$py_url" "/v2/models/$model/infer" 32)
  kill "$py"; wait "$py" 2>/dev/null || true
  echo "python: start to first answer ${py_start_s} s; c1 $py_c1; c32 $py_c32"

  p99_target=$([ "$model" = mlp ] && echo 1.0 || echo null)
  emit serve "${model}_p50_ms_concurrency_1" "$(field "$kiln_c1" p50_ms)" ms \
    "$(field "$py_c1" p50_ms)" null lower
  emit serve "${model}_p99_ms_concurrency_1" "$(field "$kiln_c1" p99_ms)" ms \
    "$(field "$py_c1" p99_ms)" "$p99_target" lower
  emit serve "${model}_requests_per_s_concurrency_32" "$(field "$kiln_c32" requests_per_s)" \
    "requests/s" "$(field "$py_c32" requests_per_s)" \
    "$(python3 -c "print(3 * $(field "$py_c32" requests_per_s))")" higher
  emit serve "${model}_deploy_to_first_answer_s" "$deploy_s" s "$py_start_s" 5 lower
done

echo "== a replica's node dies: until a replacement answers elsewhere"
token=$("$bin/kiln" service token mlp)
node=$("$bin/kiln" services mlp --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['replica_jobs'][0]['node'])")
old_url=$("$bin/kiln" services mlp --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['endpoints'][0])")
t0=$(now)
kill -9 "${worker_pid[$node]}"
pkill -9 -f "kiln-serve .*$dir/work-$node/" || true
new_url=""
for _ in $(seq 3000); do
  new_url=$("$bin/kiln" services mlp --json | python3 -c "import json,sys; e=json.load(sys.stdin)[0]['endpoints']; print(e[0] if e else '')")
  [ -n "$new_url" ] && [ "$new_url" != "$old_url" ] && break
  sleep 0.02
done
first_answer "$new_url" "/v2/models/mlp/infer" >/dev/null
replace_s=$(python3 -c "print($(now) - $t0)")
echo "replica on $node killed; $new_url answered after ${replace_s} s"
emit serve replica_node_death_to_replacement_answering_s "$replace_s" s 2 5 lower

printf '%s\n' "${results[@]}"
