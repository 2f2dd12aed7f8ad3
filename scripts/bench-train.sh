#!/usr/bin/env bash
# Training throughput: kiln-train (1 and 2 ranks, under mpirun) vs PyTorch (Debian python3-torch)
# single process and DistributedDataParallel over gloo with 2 processes. Fashion-MNIST, batch 64
# per rank, 1 thread per rank, Adam; models: the MLP 784-256-128-10 and the 2-conv CNN.
# Throughput is global samples/s over the training steps only, after 5 warm-up steps, for both.
# Each configuration runs KILN_BENCH_REPEAT times (default 3), the four of a model taking turns
# (kiln 1, kiln 2, PyTorch, DDP, kiln 1, ...), so that drifts in the machine's speed hit all of
# them alike; a figure is the median of its runs, and every run is printed.
# Ends with one JSON line per measure.
#   KILN_BENCH_MLP_STEPS (default 1000), KILN_BENCH_CNN_STEPS (default 100), KILN_BENCH_REPEAT
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh" >/dev/null
if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  [ "$(id -u)" = 0 ] && sudo_cmd="" || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends python3-torch python3-numpy >/dev/null
fi
bin="${KILN_BUILD_DIR:-$repo/build}"
dir=$(mktemp -d /tmp/kiln-bench-train-XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
MLP_STEPS=${KILN_BENCH_MLP_STEPS:-1000}
CNN_STEPS=${KILN_BENCH_CNN_STEPS:-100}
REPEAT=${KILN_BENCH_REPEAT:-3}

sed 's/"every_steps": 500/"every_steps": 0/' "$repo/configs/jobs/fashion-mnist-mlp.json" >"$dir/mlp.json"
sed 's/"every_steps": 500/"every_steps": 0/' "$repo/configs/jobs/fashion-mnist-cnn.json" >"$dir/cnn.json"

kiln() { # model ranks steps -> samples/s
  mpirun -np "$2" --bind-to none "$bin/kiln-train" --spec "$dir/$1.json" --run-dir "$dir/run-$1-$2" \
    --max-steps "$3" --threads 1 2>&1 | tee "$dir/kiln-$1-$2.log" | sed -n 's/.*finished at step.* \([0-9.]*\) samples\/s$/\1/p'
}
pytorch_single() { /usr/bin/python3 "$repo/scripts/bench_train_pytorch.py" "$1" "$2" | sed -n 's/.*samples_per_s=\([0-9.]*\)/\1/p'; }
pytorch_ddp() {
  local port=$((29500 + RANDOM % 400))
  /usr/bin/python3 "$repo/scripts/bench_train_pytorch.py" "$1" "$2" --ddp 1 2 "$port" >/dev/null &
  local other=$!
  /usr/bin/python3 "$repo/scripts/bench_train_pytorch.py" "$1" "$2" --ddp 0 2 "$port" | sed -n 's/.*samples_per_s=\([0-9.]*\)/\1/p'
  wait "$other"
}

median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

declare -A r runs
for model in mlp cnn; do
  steps=$MLP_STEPS; [ "$model" = cnn ] && steps=$CNN_STEPS
  for ((rep = 1; rep <= REPEAT; rep++)); do
    runs[kiln1_$model]+=" $(kiln "$model" 1 "$steps")"
    runs[kiln2_$model]+=" $(kiln "$model" 2 "$steps")"
    runs[torch1_$model]+=" $(pytorch_single "$model" "$steps")"
    runs[ddp2_$model]+=" $(pytorch_ddp "$model" "$steps")"
  done
  for k in kiln1 kiln2 torch1 ddp2; do
    r[${k}_$model]=$(echo "${runs[${k}_$model]}" | median)
    echo "$model $k runs (samples/s):${runs[${k}_$model]} -> median ${r[${k}_$model]}"
  done
  echo "$model: kiln 1 rank ${r[kiln1_$model]}, kiln 2 ranks ${r[kiln2_$model]}, pytorch ${r[torch1_$model]}, pytorch DDP 2 ${r[ddp2_$model]} samples/s"
done

json() { # measure value baseline target
  awk -v m="$1" -v v="$2" -v base="$3" -v t="$4" 'BEGIN {
    ratio = (base > 0 ? v / base : 0); met = (t == "null" ? "null" : (ratio >= t ? "true" : "false"));
    printf "{\"bench\": \"train\", \"measure\": \"%s\", \"value\": %s, \"unit\": \"samples/s\", \"baseline\": %s, \"ratio\": %.3f, \"target\": %s, \"met\": %s}\n", m, v, base, ratio, t, met }'
}
echo
json mlp_kiln2_vs_pytorch_ddp2 "${r[kiln2_mlp]}" "${r[ddp2_mlp]}" 2.0
json cnn_kiln2_vs_pytorch_ddp2 "${r[kiln2_cnn]}" "${r[ddp2_cnn]}" 1.2
json cnn_kiln2_vs_kiln1 "${r[kiln2_cnn]}" "${r[kiln1_cnn]}" 1.0
json mlp_kiln1_vs_pytorch_single "${r[kiln1_mlp]}" "${r[torch1_mlp]}" null
json cnn_kiln1_vs_pytorch_single "${r[kiln1_cnn]}" "${r[torch1_cnn]}" null
json mlp_kiln2_vs_kiln1 "${r[kiln2_mlp]}" "${r[kiln1_mlp]}" null
