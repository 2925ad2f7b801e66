#!/usr/bin/env bash
# The whole test suite under sanitizers, in a CPU-only debug build (-O1, -g), then ctest as
# scripts/test.sh runs it:
#   scripts/sanitize.sh [ctest args...]            AddressSanitizer (leak checks) + UBSan, build-asan/
#   scripts/sanitize.sh --thread [ctest args...]   ThreadSanitizer, build-tsan/
# UB and races are fatal. Not part of CI (a cold build takes ~15 min on 2 cores, the tests a few
# minutes); run it after changes to memory handling or threading.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
if [[ "${1:-}" == --thread ]]; then
  shift
  dir=build-tsan
  san="-fsanitize=thread"
  export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/scripts/tsan.supp}"
else
  dir=build-asan
  san="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGPTOSS_CUDA=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DCMAKE_CXX_FLAGS="-O1 -g -fno-omit-frame-pointer $san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$dir" -j "$(nproc)"
cd "$dir"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
