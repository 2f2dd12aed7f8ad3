#!/usr/bin/env bash
# CTest: scripts/gpu-check.sh runs end to end on a CPU build (KILN_GPU_CHECK_ALLOW_CPU=1), so the
# script a GPU session will run keeps working as kiln-train's output changes. Arguments: the build
# directory. Checks the exact sync-engine results and that every throughput figure was parsed.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out=$(KILN_BUILD_DIR="$1" KILN_GPU_CHECK_ALLOW_CPU=1 KILN_GPU_CHECK_STEPS=12 \
      KILN_GPU_CHECK_CPU_STEPS=8 "$repo/scripts/gpu-check.sh" 2>&1)
echo "$out"
fail() { echo "gpu_check_on_cpu: $1" >&2; exit 1; }
grep -q '"measure": "sync_engine_exact_on_gpu", "value": 1,' <<<"$out" || fail "sync engine not exact"
grep -q '"measure": "sync_engine_staged_exact_on_gpu", "value": 1,' <<<"$out" || fail "staged sync engine not exact"
for m in cnn_gpu1_vs_cpu1 cnn_gpu2_vs_gpu1; do
  grep -Eq "\"measure\": \"$m\", \"value\": [0-9.]*[1-9][0-9.]*, .*\"baseline\": [0-9.]*[1-9]" <<<"$out" ||
    fail "$m: a throughput was not parsed"
done
echo "gpu_check_on_cpu: ok"
