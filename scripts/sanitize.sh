#!/usr/bin/env bash
# The whole test suite under AddressSanitizer (with leak checks) and UBSan: a CPU-only debug build in
# build-asan/ (-O1, UB is fatal), then ctest as scripts/test.sh runs it. Not part of CI (a cold build takes
# ~15 min on 2 cores, the tests ~2 min); run it after changes to memory handling.
#   scripts/sanitize.sh [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
san="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGPTOSS_CUDA=OFF -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
cmake --build build-asan -j "$(nproc)"
cd build-asan
ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}" \
  ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
