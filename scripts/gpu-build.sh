#!/usr/bin/env bash
# Prepares, on this Debian 12 machine, a folder to carry to a GPU node that has CUDA, a C++
# compiler, CMake (ninja optional) and a Python with a CUDA PyTorch wheel (its LibTorch), but none
# of kiln's other dependencies and no network. Run as root (apt-get download; nothing is installed):
#   scripts/gpu-build.sh                 -> out/gpu-deps/  (carry this folder, under 40 MiB)
#   then on the GPU node: out/gpu-deps/build-on-gpu.sh [--check]   (docs/operations.md)
# Steps: apt-get download the Debian packages kiln-train/kiln-predict need besides LibTorch
# (OpenMPI with mpirun, ZeroMQ, spdlog/fmt, nlohmann-json, CLI11, OpenSSL, zlib, pkgconf, and the
# libraries those load) into out/gpu-debs/ (cached, not carried); dpkg -x them into
# out/gpu-deps/prefix/ (never into /); make symlinks relative and pkg-config files relocatable;
# drop docs, static and Fortran/Java/OpenSHMEM libraries and the MPI plugins whose libraries are
# not shipped (InfiniBand verbs, libfabric, UCX, PSM); check that every library's dependencies
# are in the prefix or in glibc/libstdc++; write env.sh and build-on-gpu.sh beside the prefix.
# Idempotent: does nothing (prints the size) when the folder was made by this same script.
#   KILN_GPU_DEPS_DIR   the folder to carry (default <repo>/out/gpu-deps)
#   KILN_GPU_DEBS_DIR   the .deb cache (default <repo>/out/gpu-debs)
#   KILN_GPU_DEPS_FORCE=1  unpack again even when the folder is up to date
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${KILN_GPU_DEPS_DIR:-$repo/out/gpu-deps}"
debs="${KILN_GPU_DEBS_DIR:-$repo/out/gpu-debs}"
arch=x86_64-linux-gnu
limit_mib=40
started=$(date +%s)

packages=(
  # OpenMPI (libraries, headers, the mpicxx wrapper and mpirun/orted) and what it loads
  libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common
  libhwloc15 libudev1 libpmix2 libmunge2 libevent-core-2.1-7 libevent-pthreads-2.1-7 libnl-3-200
  # ZeroMQ (kiln_transport) and what libzmq5 links: CURVE (libsodium), PGM, NORM, GSSAPI
  libzmq3-dev libzmq5 cppzmq-dev libsodium23 libpgm-5.3-0 libnorm1 libbsd0 libmd0
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  # logging, JSON, command line
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 nlohmann-json3-dev libcli11-dev
  # OpenSSL libcrypto (credentials, sha256) and zlib (gzip'd IDX files)
  libssl-dev libssl3 zlib1g-dev zlib1g
  # pkg-config, for CMake's pkg_check_modules(libzmq)
  pkgconf-bin libpkgconf3
)
# What the GPU node is assumed to have: glibc and the C++ runtime. Everything else is shipped.
base_libs="ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 \
libresolv.so.2 libutil.so.1 libanl.so.1 libstdc++.so.6 libgcc_s.so.1"
# Plugins that may be dropped when their libraries are not shipped (the rest must resolve).
plugin_dirs="openmpi/lib/openmpi3 pmix2/lib/pmix engines-3 ossl-modules krb5/plugins"

stamp_want="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16) ${packages[*]}"
size_report() {
  local kib
  kib=$(du -sk "$out" | cut -f1)
  echo "gpu-build: $out is $((kib / 1024)) MiB ($kib KiB; limit $limit_mib MiB)"
  [ "$kib" -le $((limit_mib * 1024)) ] || { echo "gpu-build: $out is over $limit_mib MiB" >&2; exit 1; }
}

mkdir -p "$(dirname "$out")" "$debs"
exec 9>"$(dirname "$out")/.gpu-build.lock"
flock 9
if [ "${KILN_GPU_DEPS_FORCE:-0}" != 1 ] && [ -f "$out/.stamp" ] &&
   [ "$(cat "$out/.stamp")" = "$stamp_want" ]; then
  echo "gpu-build: $out is up to date (KILN_GPU_DEPS_FORCE=1 redoes it)"
  size_report
  exit 0
fi

# ---- 1. download (only what the cache lacks) ----------------------------------------------------
missing=()
for p in "${packages[@]}"; do
  compgen -G "$debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "gpu-build: downloading ${#missing[@]} packages into $debs"
  apt_dl() { (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "${missing[@]}"); }
  if ! apt_dl; then
    echo "gpu-build: apt-get download failed; updating the package lists and retrying" >&2
    apt-get update -q
    apt_dl
  fi
fi

# ---- 2. unpack into a fresh prefix ------------------------------------------------------------
tmp="$out.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
pfx="$tmp/prefix"
mkdir -p "$pfx"
for p in "${packages[@]}"; do
  deb=$(compgen -G "$debs/${p}_*.deb" | sort -V | tail -1)
  dpkg-deb -x "$deb" "$pfx"
done
# Merge /lib, /bin, /sbin into usr/ (Debian 12 is merged-/usr; zlib1g still ships /lib).
for d in lib lib64 bin sbin; do
  if [ -d "$pfx/$d" ] && [ ! -L "$pfx/$d" ]; then
    mkdir -p "$pfx/usr/$d"
    cp -a "$pfx/$d/." "$pfx/usr/$d/"
    rm -rf "${pfx:?}/$d"
  fi
done
lib="$pfx/usr/lib/$arch"
# OpenSSL's configuration.h sits in the multiarch include dir, which only the compiler's own
# search path names: move it beside the other OpenSSL headers (else the node's would be needed).
cp -a "$pfx/usr/include/$arch/openssl/." "$pfx/usr/include/openssl/"
rm -rf "${pfx:?}/usr/include/$arch/openssl"

# ---- 3. trim what neither building nor running needs -----------------------------------------
rm -rf "$pfx/usr/share/doc" "$pfx/usr/share/man" "$pfx/usr/share/info" "$pfx/usr/share/lintian" \
       "$pfx/usr/share/bug" "$pfx/usr/share/aclocal" "$lib/fortran"
find "$pfx" \( -name '*.a' -o -name '*.la' -o -name '*.mod' \) -delete
# Fortran, Java and OpenSHMEM: kiln uses MPI from C++ only.
find "$pfx" \( -name 'libmpi_mpifh*' -o -name 'libmpi_usempi*' -o -name 'libmpi_java*' \
  -o -name 'liboshmem*' -o -name 'mca_spml_*' -o -name 'mca_sshmem_*' -o -name 'mca_atomic_*' \
  -o -name 'mca_scoll_*' -o -name 'mca_memheap_*' -o -name 'ompi-fort.pc' -o -name 'ompi-f*.pc' \
  -o -name '*fort*-wrapper-data.txt' -o -name 'mpif*-wrapper-data.txt' -o -name 'osh*' \
  -o -name 'shmem*' -o -name 'mpijavac*' \) -exec rm -rf {} +
# MPI's helpers for InfiniBand verbs, libfabric and UCX (not shipped: large, and the GPU check runs
# on one node; Debian's openmpi-mca-params.conf disables those transports anyway). The plugins that
# use them are dropped below.
find "$pfx" \( -name 'libmca_common_ofi.so*' -o -name 'libmca_common_ucx.so*' \
  -o -name 'libmca_common_verbs.so*' \) -delete

# ---- 4. symlinks: absolute -> relative inside the prefix; names the alternatives would make ------
while IFS= read -r link; do
  target=$(readlink "$link")
  case "$target" in
    /lib/*|/bin/*|/sbin/*) target="/usr$target" ;;
  esac
  if [ -e "$pfx$target" ]; then
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$pfx$target")" "$link"
  else
    rm -f "$link"  # e.g. /etc/alternatives links: made below where they matter
  fi
done < <(find "$pfx" -type l -lname '/*')
for t in mpirun mpiexec; do ln -sfn orterun "$pfx/usr/bin/$t"; done
for t in mpicc mpicxx mpic++ mpiCC; do ln -sfn opal_wrapper "$pfx/usr/bin/$t"; done
ln -sfn pkgconf "$pfx/usr/bin/pkg-config"
# Debian's libmpi.so etc. live in openmpi/lib (the alternative's directory): link them beside
# the others too, so one -L/rpath directory holds every library.
for f in "$lib"/openmpi/lib/*.so; do
  [ -e "$lib/$(basename "$f")" ] || ln -s "openmpi/lib/$(basename "$f")" "$lib/$(basename "$f")"
done
# Dangling links left by the trimming above.
find "$pfx" -xtype l -delete

# ---- 5. pkg-config and config files: relocatable ----------------------------------------------
while IFS= read -r pc; do
  rel=$(realpath -m --relative-to="$(dirname "$pc")" "$pfx/usr")
  sed -i -E \
    -e "s#^prefix=.*#prefix=\${pcfiledir}/$rel#" \
    -e "/^prefix=/! s#([=\" ]|-I|-L)/usr(/|\"|$| )#\\1\${prefix}\\2#g" \
    -e '/^Requires.private:/d' "$pc"   # only static linking needs them (libzmq's pull in krb5 etc.)
done < <(find "$pfx" -name '*.pc')
# PMIx's plugin path is absolute; env.sh sets PMIX_PKGLIBDIR (and PMIX_SYSCONFDIR, for this file).
sed -i -e 's/^mca_base_component_path/# &/' "$lib/pmix2/share/pmix-mca-params.conf"
# The CMake package files (spdlog, fmt, nlohmann_json, CLI11) already locate themselves from
# CMAKE_CURRENT_LIST_DIR; their one "/usr" mention only applies when loaded from /usr itself.
bad=$(grep -rlE '"/usr/(include|lib)' --include='*.cmake' "$pfx" | xargs -r grep -LE '_realOrig' || true)
[ -z "$bad" ] || { echo "gpu-build: these CMake files name absolute /usr paths: $bad" >&2; exit 1; }

# ---- 6. every ELF's needed libraries: in the prefix or glibc/libstdc++; else drop the plugin ----
while :; do
  # "FILE NEEDED" for each needed library that is neither in the prefix nor in base_libs.
  unresolved=$( { find "$pfx" \( -type f -o -type l \) -name '*.so*' -printf 'have %f\n'
                 tr ' ' '\n' <<<"$base_libs" | sed 's/^/have /'
                 find "$pfx" -type f \( -name '*.so*' -o -perm -u+x \) -exec readelf -d {} + 2>/dev/null || true  # (fails on the scripts)
               } | awk '$1 == "have" { have[$2] = 1; next }
                        $1 == "File:" { file = $2; next }
                        /\(NEEDED\)/ { n = $NF; gsub(/[][]/, "", n); need[file " " n] = n }
                        END { for (k in need) if (!(need[k] in have)) print k }' | sort)
  [ -n "$unresolved" ] || break
  while read -r f need; do
    [ -e "$f" ] || continue
    rel="${f#"$lib"/}"
    plugin=false
    for d in $plugin_dirs; do [[ "$rel" == "$d"/* ]] && plugin=true; done
    $plugin || { echo "gpu-build: $f needs $need, which is neither shipped nor assumed on the GPU node" >&2; exit 1; }
    echo "gpu-build: dropping plugin $rel (needs $need)"
    rm -f "$f"
  done <<<"$unresolved"
  find "$pfx" -xtype l -delete
done
# The newest glibc symbol version the prefix needs (the node's glibc must be at least that).
versions=$( { find "$pfx" -type f \( -name '*.so*' -o -perm -u+x \) -exec objdump -T {} + 2>/dev/null ||
              true; } | grep -oE 'GLIBC(XX)?_[0-9.]+' | sort -u)
glibc_need=$(grep -o 'GLIBC_2\.[0-9]*' <<<"$versions" | sed 's/GLIBC_//' | sort -V | tail -1)
glibcxx_need=$(grep -o 'GLIBCXX_3\.4\.[0-9]*' <<<"$versions" | sort -V | tail -1)

# ---- 7. env.sh and build-on-gpu.sh ------------------------------------------------------------
cat >"$tmp/env.sh" <<EOF
# shellcheck shell=bash
# Source this on the GPU node to run what build-on-gpu.sh built (mpirun, kiln-train, ...).
# Generated by scripts/gpu-build.sh from Debian 12 packages: ${packages[*]}
# OpenMPI and PMIx were built for /usr; OPAL_PREFIX and the PMIX_* dirs relocate them here.
kiln_deps="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
kiln_pfx="\$kiln_deps/prefix/usr"
kiln_lib="\$kiln_pfx/lib/$arch"
export OPAL_PREFIX="\$kiln_pfx"
export OPAL_SYSCONFDIR="\$kiln_deps/prefix/etc/openmpi"
export PMIX_PREFIX="\$kiln_lib/pmix2"
export PMIX_SYSCONFDIR="\$kiln_lib/pmix2/share" PMIX_PKGDATADIR="\$kiln_lib/pmix2/share/pmix"
export PMIX_PKGLIBDIR="\$kiln_lib/pmix2/lib/pmix"
# hwloc's plugins (PCI, OpenCL, libxml2, ...) are not shipped; never load the node's own.
export HWLOC_PLUGINS_PATH="\$kiln_lib/hwloc"
export PATH="\$kiln_pfx/bin\${PATH:+:\$PATH}"
export LD_LIBRARY_PATH="\$kiln_lib:\$kiln_lib/openmpi/lib:\$kiln_lib/pmix2/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
# Only the prefix's .pc files (pkg_check_modules), never the node's own.
export PKG_CONFIG_LIBDIR="\$kiln_lib/pkgconfig:\$kiln_lib/openmpi/lib/pkgconfig:\$kiln_pfx/share/pkgconfig"
EOF

cat >"$tmp/build-on-gpu.sh" <<'EOF'
#!/usr/bin/env bash
# Builds kiln-train, kiln-predict and kiln-sync-check on a GPU node against its CUDA LibTorch
# (a PyTorch wheel's, found with python3) and the Debian libraries in prefix/ beside this script
# (made by scripts/gpu-build.sh; docs/operations.md, "Building kiln-train with CUDA on a GPU node").
#   build-on-gpu.sh [--check] [SOURCE_DIR [BUILD_DIR]] [-- EXTRA_CMAKE_ARGS...]
#     SOURCE_DIR  kiln's checkout (default: the one holding this folder as out/gpu-deps)
#     BUILD_DIR   default SOURCE_DIR/build-cuda (what scripts/gpu-check.sh looks for)
#     --check     then run scripts/gpu-check.sh on that build
#   KILN_TORCH_PREFIX  LibTorch's CMake prefix (default: python3's torch.utils.cmake_prefix_path;
#                      empty: let CMake find Torch by itself, e.g. -DTorch_DIR=... after --)
#   KILN_BUILD_JOBS (default: all cores), KILN_CMAKE_GENERATOR (default Ninja if installed),
#   KILN_BUILD_TARGETS (default: kiln-train kiln-predict kiln-sync-check)
# Afterwards, `source <this folder>/env.sh` before running mpirun or the binaries by hand.
set -euo pipefail
deps="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
check=false
[ "${1:-}" = --check ] && { check=true; shift; }
args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
src="${args[0]:-$(cd "$deps/../.." && pwd)}"
build="${args[1]:-$src/build-cuda}"
grep -q 'project(kiln' "$src/CMakeLists.txt" 2>/dev/null ||
  { echo "build-on-gpu: $src is not a kiln checkout; pass SOURCE_DIR" >&2; exit 2; }
# shellcheck source=/dev/null
source "$deps/env.sh"
pfx="$deps/prefix/usr"
lib="$pfx/lib/@ARCH@"

have=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
if [ "$(printf '%s\n' "2.@GLIBC_MINOR@" "$have" | sort -V | head -1)" != "2.@GLIBC_MINOR@" ]; then
  echo "build-on-gpu: these Debian 12 libraries need glibc >= 2.@GLIBC_MINOR@; this node has $have" >&2
  exit 2
fi
if [ -z "${KILN_TORCH_PREFIX+set}" ]; then
  KILN_TORCH_PREFIX=$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)') || {
    echo "build-on-gpu: python3 cannot import torch; set KILN_TORCH_PREFIX" >&2; exit 2; }
  # Debian's libraries use the C++11 std::string ABI; a pre-C++11-ABI LibTorch cannot link them.
  abi=$(python3 -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
  [ "$abi" = 1 ] || { echo "build-on-gpu: this torch uses the old C++ ABI; kiln needs a cxx11-ABI LibTorch" >&2; exit 2; }
fi
prefix_path="$pfx${KILN_TORCH_PREFIX:+;$KILN_TORCH_PREFIX}"
generator="${KILN_CMAKE_GENERATOR:-}"
[ -n "$generator" ] || { command -v ninja >/dev/null && generator=Ninja || generator="Unix Makefiles"; }
targets="${KILN_BUILD_TARGETS:-kiln-train kiln-predict kiln-sync-check}"
cuda_args=()
command -v nvcc >/dev/null && cuda_args+=("-DCMAKE_CUDA_COMPILER=$(command -v nvcc)")

set -x
cmake -S "$src" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DKILN_TRAINER_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$prefix_path" \
  -DPKG_CONFIG_EXECUTABLE="$pfx/bin/pkg-config" \
  -DMPI_CXX_COMPILER="$pfx/bin/mpicxx" -DMPI_C_COMPILER="$pfx/bin/mpicc" \
  -DCMAKE_BUILD_RPATH="$lib;$lib/openmpi/lib;$lib/pmix2/lib" \
  "${cuda_args[@]}" "$@"
# shellcheck disable=SC2086
cmake --build "$build" -j "${KILN_BUILD_JOBS:-$(nproc)}" --target $targets
{ set +x; } 2>/dev/null
echo "build-on-gpu: built $targets in $build"
echo "build-on-gpu: to run them: source $deps/env.sh; KILN_BUILD_DIR=$build $src/scripts/gpu-check.sh"
if $check; then
  KILN_BUILD_DIR="$build" "$src/scripts/gpu-check.sh"
fi
EOF
sed -i -e "s/@ARCH@/$arch/g" -e "s/@GLIBC_MINOR@/${glibc_need#2.}/g" "$tmp/build-on-gpu.sh"
chmod +x "$tmp/build-on-gpu.sh"
cat >"$tmp/README" <<EOF
kiln's build dependencies besides LibTorch, from Debian 12 (scripts/gpu-build.sh, $(date -u +%F)).
On the GPU node: ./build-on-gpu.sh [--check] [KILN_SOURCE_DIR [BUILD_DIR]]; then source env.sh.
Needs glibc >= $glibc_need and libstdc++ with $glibcxx_need; a cxx11-ABI LibTorch; g++, cmake.
EOF

# ---- 8. swap in the new folder, check it runs here ------------------------------------------
echo "$stamp_want" >"$tmp/.stamp"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
(
  # shellcheck source=/dev/null
  source "$out/env.sh"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mpirun --version | head -1
  mpicxx --showme:link >/dev/null
  pkg-config --cflags --libs libzmq >/dev/null
  mpirun -np 1 true
)
echo "gpu-build: prefix ready in $(( $(date +%s) - started )) s; needs glibc >= $glibc_need, $glibcxx_need"
size_report
