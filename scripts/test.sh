#!/usr/bin/env bash
# Sets up and builds kiln if needed (scripts/setup.sh), then runs the whole test suite via CTest.
# Extra arguments go to ctest (e.g. -R store, -L integration).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$repo/scripts/setup.sh"
cd "${KILN_BUILD_DIR:-$repo/build}"
ctest --output-on-failure --timeout 600 "$@"
