#!/usr/bin/env bash
# CTest: the folder scripts/gpu-build.sh makes for a GPU node (out/gpu-deps: Debian's OpenMPI,
# ZeroMQ, spdlog, ... unpacked into a prefix) is all kiln-train needs besides LibTorch. Runs the
# script (downloads are cached; an up-to-date folder is kept), then its build-on-gpu.sh in a fresh
# build dir with this machine's CPU LibTorch and only the prefix on CMAKE_PREFIX_PATH, checks
# that every dependency (CMake cache, headers, libraries, mpirun's plugins) resolved inside the
# prefix and not to the copies installed here, and trains 1 rank under the prefix's mpirun.
# Arguments: the build directory (its CMakeCache.txt names Torch_DIR).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$1"
deps="${KILN_GPU_DEPS_DIR:-$repo/out/gpu-deps}"
fail() { echo "gpu_build_prefix_on_cpu: $1" >&2; exit 1; }
started=$(date +%s)

KILN_GPU_DEPS_DIR="$deps" "$repo/scripts/gpu-build.sh"
deps="$(cd "$deps" && pwd -P)"
pfx="$deps/prefix"

torch_dir=$(sed -n 's/^Torch_DIR:PATH=//p' "$bin/CMakeCache.txt" 2>/dev/null || true)
[ -n "$torch_dir" ] || torch_dir=$(dirname "$(find /usr/lib /usr/share /usr/local -name TorchConfig.cmake 2>/dev/null | head -1)")
[ -f "$torch_dir/TorchConfig.cmake" ] || fail "no TorchConfig.cmake (Torch_DIR=$torch_dir)"
build="$bin/gpu-build-prefix"
rm -rf "$build"
KILN_TORCH_PREFIX='' KILN_BUILD_TARGETS=kiln-train KILN_BUILD_JOBS="${KILN_BUILD_JOBS:-2}" \
  nice -n 19 "$deps/build-on-gpu.sh" "$repo" "$build" -- -DTorch_DIR="$torch_dir" 2>&1 |
  grep -v '^\[[0-9]*/[0-9]*\] Building' || fail "build-on-gpu.sh failed"
[ -x "$build/kiln-train" ] || fail "no $build/kiln-train"

# 1. CMake found every non-Torch dependency in the prefix.
for var in MPI_CXX_COMPILER MPI_CXX_HEADER_DIR MPI_mpi_LIBRARY MPI_mpi_cxx_LIBRARY \
           PKG_CONFIG_EXECUTABLE pkgcfg_lib_ZMQ_zmq spdlog_DIR fmt_DIR nlohmann_json_DIR CLI11_DIR \
           OPENSSL_INCLUDE_DIR OPENSSL_CRYPTO_LIBRARY ZLIB_INCLUDE_DIR ZLIB_LIBRARY_RELEASE; do
  value=$(sed -n "s/^$var:[A-Z]*=//p" "$build/CMakeCache.txt")
  [ -n "$value" ] || fail "$var is not in the CMake cache"
  real=$(realpath -m "$value")
  [[ "$real" == "$pfx"/* ]] || fail "$var=$value is outside the prefix $pfx"
  echo "ok: $var=$value"
done

# 2. No header of those libraries came from this machine's /usr.
if [ -f "$build/build.ninja" ]; then
  headers=$(cd "$build" && ninja -t deps)
else
  headers=$(find "$build" -name '*.d' -exec cat {} +)
fi
# Normalized (pkg-config's include dirs read .../pkgconfig/../../../include).
headers=$(grep -oE '/[^ :\\]+\.(h|hpp|hh|inl|ipp|tcc)' <<<"$headers" | sort -u | xargs realpath -m | sort -u)
used=$(grep -E '^/usr/(include|lib/x86_64-linux-gnu/openmpi)/' <<<"$headers" |
  grep -E '/(zmq|zmq_addon)\.h|/(spdlog|fmt|nlohmann|CLI|openssl)/|/z(lib|conf)\.h|/mpi[^/]*\.h|openmpi/' |
  sort -u || true)
[ -z "$used" ] || fail "headers from this machine's packages, not the prefix: $(head -5 <<<"$used")"
for h in zmq.h spdlog/spdlog.h nlohmann/json.hpp openssl/evp.h openssl/configuration.h zlib.h; do
  grep -qxF "$pfx/usr/include/$h" <<<"$headers" || fail "$h was not read from the prefix"
done
grep -qxF "$pfx/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h" <<<"$headers" ||
  fail "mpi.h was not read from the prefix"

# 3. At run time (env.sh), the libraries the prefix holds come from it.
# shellcheck source=/dev/null
source "$deps/env.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
shipped=$(find "$pfx" -name '*.so*' -printf '%f\n' | sort -u)
check_libs() { # what ("name => path" lines or /proc maps)
  local bad
  bad=$(grep -oE '/[^ ]*\.so[.0-9]*' | sort -u | while read -r path; do
          grep -qxF "$(basename "$path")" <<<"$shipped" || continue
          [[ "$(realpath "$path")" == "$pfx"/* ]] || echo "$path"
        done)
  [ -z "$bad" ] || fail "$1 loads these from outside the prefix: $bad"
}
libs=$(ldd "$build/kiln-train")
check_libs kiln-train <<<"$libs"
for l in libzmq.so.5 libmpi.so.40 libcrypto.so.3 libsodium.so.23 libz.so.1; do
  grep -qF "$l => $pfx/" <<<"$libs" || fail "kiln-train does not load the prefix's $l"
done
[ "$(command -v mpirun)" = "$deps/prefix/usr/bin/mpirun" ] || fail "mpirun is not the prefix's: $(command -v mpirun)"
# shellcheck disable=SC2016
maps=$(mpirun -np 1 sh -c 'cat /proc/$PPID/maps')
grep -q "$pfx/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/mca_" <<<"$maps" || fail "mpirun loaded no plugin from the prefix"
# mpirun (no LibTorch) loads nothing from outside the prefix but glibc and the C++ runtime.
outside=$(grep -oE '/[^ ]*\.so[.0-9]*' <<<"$maps" | sort -u | while read -r path; do
            [[ "$(realpath "$path")" == "$pfx"/* ]] && continue
            grep -qE '/(ld-linux-x86-64|libc|libm|libdl|libpthread|librt|libresolv|libutil|libstdc\+\+|libgcc_s)\.so' <<<"$path" ||
              echo "$path"
          done)
[ -z "$outside" ] || fail "mpirun loads these from outside the prefix: $outside"

# 4. A real 1-rank run under the prefix's mpirun.
run=$(mktemp -d /tmp/kiln-gpu-build-test-XXXXXX)
trap 'rm -rf "$run"' EXIT
sed -e 's/"ranks": 2/"ranks": 1/' -e 's/"every_steps": 200/"every_steps": 0/' \
  "$repo/configs/jobs/synthetic-binary-mlp.json" >"$run/spec.json"
"$build/kiln-train" --help >"$run/help.txt"; head -3 "$run/help.txt"
out=$(mpirun --oversubscribe --bind-to none -np 1 "$build/kiln-train" --spec "$run/spec.json" \
        --run-dir "$run/run" --max-steps 40 --threads 1 2>&1) || { echo "$out"; fail "kiln-train under mpirun failed"; }
echo "$out" | tail -5
grep -q "finished at step 40" <<<"$out" || fail "kiln-train did not finish 40 steps"
echo "gpu_build_prefix_on_cpu: ok in $(( $(date +%s) - started )) s"
