#!/usr/bin/env bash
# Builds (if needed) and runs the whole test suite: unit, golden (../shared/fixtures), CLI tests.
#   scripts/test.sh [ctest args...]     e.g. scripts/test.sh -R tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache keys on paths relative to the checkout, so clones in other folders (CI) share the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
build_dir="${GPTOSS_BUILD_DIR:-build}"
if [[ ! -f "$build_dir/build.ninja" ]]; then
  GPTOSS_NO_INSTALL=1 scripts/setup.sh
fi
[[ -x /usr/local/cuda/bin/nvcc ]] && export PATH="/usr/local/cuda/bin:$PATH"
cmake --build "$build_dir" -j "$(nproc)"
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" --timeout 900 "$@"
