#!/usr/bin/env bash
# Fuzzes the scheduler's input handling with libFuzzer (clang from Debian): the envelope decoder
# with every typed message decoder (checkpoint chunks included), and the job spec validator.
# Each target runs FUZZ_SECONDS (default 60) with AddressSanitizer and UBSan, starting from the
# seed corpus in tests/fuzz/corpus/<target>/. New inputs go to a scratch corpus; a crash is saved
# in tests/fuzz/crashes/ -- fix it, then move the input into tests/fuzz/corpus/<target>/ so the
# unit test `fuzz corpus` replays it from then on.
# Ends with one JSON line per target: executions, seconds, crashes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends clang libclang-rt-14-dev >/dev/null
fi
"$repo/scripts/setup.sh" >/dev/null  # the Debian headers (nlohmann/json) the sources need
out=$(mktemp -d /tmp/kiln-fuzz-XXXXXX)
trap 'rm -rf "$out"' EXIT
mkdir -p "$repo/tests/fuzz/crashes"
sources=("$repo"/common/status.cpp "$repo"/common/json_fields.cpp "$repo"/common/job_spec.cpp
         "$repo"/common/quantities.cpp "$repo"/common/protocol/codec.cpp
         "$repo"/tests/fuzz/fuzz_targets.cpp)
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$repo")
results=()
for target in envelope job_spec; do
  echo "== $target: building"
  clang++ "${flags[@]}" "${sources[@]}" "$repo/tests/fuzz/fuzz_$target.cpp" -o "$out/fuzz_$target"
  mkdir -p "$out/corpus_$target"
  echo "== $target: fuzzing for $seconds s"
  set +e
  "$out/fuzz_$target" "$out/corpus_$target" "$repo/tests/fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$repo/tests/fuzz/crashes/$target-" -print_final_stats=1 \
    >"$out/$target.log" 2>&1
  rc=$?
  set -e
  tail -n 15 "$out/$target.log"
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$out/$target.log" | tail -1)
  crashes=$(ls "$repo/tests/fuzz/crashes/" 2>/dev/null | grep -c "^$target-" || true)
  results+=("{\"bench\": \"fuzz\", \"measure\": \"${target}_executions\", \"value\": ${runs:-0}, \"unit\": \"runs\", \"baseline\": null, \"ratio\": null, \"target\": null, \"met\": null, \"seconds\": $seconds, \"crashes\": $crashes, \"exit\": $rc}")
done
printf '%s\n' "${results[@]}"
