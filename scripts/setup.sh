#!/usr/bin/env bash
# Installs every Debian package kiln needs (idempotent, non-interactive), then configures and builds
# kiln in Release mode into build/. Safe to run again: apt and CMake only do what is missing.
#   KILN_SKIP_APT=1   skip the package step (packages already present)
#   KILN_BUILD_DIR    build directory (default: <repo>/build)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KILN_BUILD_DIR:-$repo/build}"

packages=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-pthread
  libopenmpi-dev openmpi-bin
  libzmq3-dev cppzmq-dev
  nlohmann-json3-dev libcli11-dev libspdlog-dev catch2
  libsqlite3-dev zlib1g-dev libssl-dev
  libcpp-httplib-dev python3-prometheus-client
  libjs-chart.js chromium python3-websocket libtomlplusplus-dev libsystemd-dev openssl curl
  dataset-fashion-mnist
  procps psmisc
  tcpdump iproute2 util-linux
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${KILN_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

jobs="$(nproc)"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$jobs"
