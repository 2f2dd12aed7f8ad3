#!/usr/bin/env bash
# GPU check of kiln-train on one node. Run it where kiln-train was built against a CUDA LibTorch
# (KILN_BUILD_DIR, default <repo>/build-cuda; docs/operations.md says how). It runs:
#  1. the gradient sync engine on the GPU, 2 ranks: kiln-sync-check --cuda (exact rank-valued
#     means; buckets reduced in place with CUDA-aware MPI, else staged), then with --stage;
#  2. the Fashion-MNIST CNN, batch 64 per rank: 1 rank on the CPU (the baseline), 1 rank on the
#     GPU and 2 ranks on the GPU(s) (gpus_per_rank 1; with one GPU both ranks share it).
# Ends with one JSON line per measure. Exits 2 if this build or node has no CUDA device.
#   KILN_GPU_CHECK_STEPS (default 300), KILN_GPU_CHECK_CPU_STEPS (default 60)
#   KILN_GPU_CHECK_ALLOW_CPU=1 runs it all the same without CUDA (to test this script on a CPU box)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${KILN_BUILD_DIR:-$repo/build-cuda}"
steps="${KILN_GPU_CHECK_STEPS:-300}"
cpu_steps="${KILN_GPU_CHECK_CPU_STEPS:-60}"
for tool in kiln-train kiln-sync-check; do
  [ -x "$bin/$tool" ] || { echo "gpu-check: no $bin/$tool; build kiln against a CUDA LibTorch there (docs/operations.md)" >&2; exit 2; }
done
dir=$(mktemp -d /tmp/kiln-gpu-check-XXXXXX)
trap 'rm -rf "$dir"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mpi() { mpirun --oversubscribe --bind-to none "$@"; }

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
sync_out=$(mpi -np 2 "$bin/kiln-sync-check" --cuda 2>&1 || true)
echo "$sync_out"
if ! grep -q "on cuda" <<<"$sync_out" && [ "${KILN_GPU_CHECK_ALLOW_CPU:-0}" != 1 ]; then
  echo "gpu-check: kiln-sync-check --cuda ran on the CPU: this LibTorch or node has no CUDA device" >&2
  exit 2
fi
stage_out=$(mpi -np 2 "$bin/kiln-sync-check" --cuda --stage 2>&1 || true)
echo "$stage_out"
sync_ok=false; grep -Eq "rank 0: .* on (cuda:[0-9]+|cpu), 0 failures" <<<"$sync_out" && sync_ok=true
stage_ok=false; grep -Eq "rank 0: .* staged on (cuda:[0-9]+|cpu), 0 failures" <<<"$stage_out" && stage_ok=true

sed -e 's/"every_steps": 500/"every_steps": 0/' "$repo/configs/jobs/fashion-mnist-cnn.json" >"$dir/cpu.json"
sed -e 's/"gpus_per_rank": 0/"gpus_per_rank": 1/' "$dir/cpu.json" >"$dir/gpu.json"
train() { # spec ranks steps -> samples/s
  mpi -np "$2" "$bin/kiln-train" --spec "$dir/$1.json" --run-dir "$dir/run-$1-$2" \
    --max-steps "$3" --threads 1 2>&1 | tee "$dir/$1-$2.log" |
    sed -n 's/.*finished at step.* \([0-9.]*\) samples\/s$/\1/p'
}
cpu1=$(train cpu 1 "$cpu_steps")
gpu1=$(train gpu 1 "$steps")
gpu2=$(train gpu 2 "$steps")
grep -h "training\|CUDA\|error" "$dir"/gpu-*.log | head -6 || true  # head may close the pipe early
echo "CNN samples/s: CPU 1 rank $cpu1, GPU 1 rank $gpu1, GPU 2 ranks $gpu2"

json() { # measure value unit baseline target
  awk -v m="$1" -v v="$2" -v u="$3" -v base="$4" -v t="$5" 'BEGIN {
    ratio = (base > 0 ? v / base : 0); met = (t == "null" ? "null" : (ratio >= t ? "true" : "false"));
    printf "{\"bench\": \"gpu\", \"measure\": \"%s\", \"value\": %s, \"unit\": \"%s\", \"baseline\": %s, \"ratio\": %.3f, \"target\": %s, \"met\": %s}\n", m, v, u, base, ratio, t, met }'
}
echo
json sync_engine_exact_on_gpu "$([ $sync_ok = true ] && echo 1 || echo 0)" bool 1 1
json sync_engine_staged_exact_on_gpu "$([ $stage_ok = true ] && echo 1 || echo 0)" bool 1 1
json cnn_gpu1_vs_cpu1 "${gpu1:-0}" samples/s "${cpu1:-0}" null
json cnn_gpu2_vs_gpu1 "${gpu2:-0}" samples/s "${gpu1:-0}" null
