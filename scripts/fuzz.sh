#!/usr/bin/env bash
# Fuzzes the scheduler's input handling with libFuzzer (clang from Debian): the envelope decoder
# with every typed message decoder, the job spec validator, and the checkpoint upload handlers of a
# real SchedulerService (ckpt_begin/ckpt_chunk sequences from a worker, reads and removals from a
# client). FUZZ_TARGETS picks some of "envelope job_spec checkpoint_upload".
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
decoders=("$repo"/common/status.cpp "$repo"/common/json_fields.cpp "$repo"/common/job_spec.cpp
          "$repo"/common/quantities.cpp "$repo"/common/protocol/codec.cpp
          "$repo"/tests/fuzz/fuzz_targets.cpp)
# The whole scheduler service (without its main), for the handler target.
service=("$repo"/common/*.cpp "$repo"/common/protocol/codec.cpp "$repo"/common/transport/*.cpp
         "$repo"/scheduler/core/*.cpp "$repo"/tests/fuzz/checkpoint_upload_target.cpp)
for f in "$repo"/scheduler/service/*.cpp; do [ "$(basename "$f")" = main.cpp ] || service+=("$f"); done
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$repo")
results=()
for target in ${FUZZ_TARGETS:-envelope job_spec checkpoint_upload}; do
  echo "== $target: building"
  if [ "$target" = checkpoint_upload ]; then
    mkdir -p "$out/obj"
    export FUZZ_CXXFLAGS="${flags[*]} $(pkg-config --cflags spdlog libzmq sqlite3)" FUZZ_OBJ="$out/obj"
    printf '%s\n' "${service[@]}" "$repo/tests/fuzz/fuzz_$target.cpp" |
      xargs -P "$(nproc)" -I{} sh -c 'clang++ $FUZZ_CXXFLAGS -c "$1" -o "$FUZZ_OBJ/$(basename "$1" .cpp).o"' _ {}
    # shellcheck disable=SC2046
    clang++ "${flags[@]}" "$out"/obj/*.o -o "$out/fuzz_$target" \
      $(pkg-config --libs spdlog libzmq sqlite3) -lssl -lcrypto
  else
    clang++ "${flags[@]}" "${decoders[@]}" "$repo/tests/fuzz/fuzz_$target.cpp" -o "$out/fuzz_$target"
  fi
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
