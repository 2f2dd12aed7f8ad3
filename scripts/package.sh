#!/usr/bin/env bash
# Builds kiln's Debian package (CPack) from an existing build: build/kiln_VERSION_ARCH.deb.
#   scripts/package.sh [BUILD_DIR]     (default: build; run scripts/setup.sh first)
#   KILN_PACKAGE_NO_BUILD=1            package what is built, building nothing
# Install it with: apt install ./build/kiln_*.deb   (then docs/operations.md, "As services")
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
# The package installs under /usr (CPACK_INSTALL_PREFIX), whatever prefix the build has.
if [ "${KILN_PACKAGE_NO_BUILD:-0}" != 1 ]; then
  cmake "$build" >/dev/null
  cmake --build "$build" -j "$(nproc)" --target kiln kiln-scheduler kiln-worker kiln-rsh \
    kiln-train kiln-predict
fi
(cd "$build" && cpack -G DEB >/dev/null)
ls "$build"/kiln_*.deb
