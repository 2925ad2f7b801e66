#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/<name>_fuzz.cpp) with clang in build-fuzz/ and runs one.
#   scripts/fuzz.sh <name> [seconds=60] [extra libFuzzer flags...]
#   scripts/fuzz.sh harmony_parser 300
# The seed corpus fuzz/corpus/<name>/ (parquet: the test fixtures in tests/io/data) is read but never
# written: new inputs go to fuzz/out/<name>/ (git-ignored), crashes to fuzz/out/crash-*. Exit code: libFuzzer's (0 = ran clean).
# The libraries are compiled with coverage + ASan/UBSan too, so libFuzzer sees their branches.
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/fuzz.sh <name> [seconds] (names: $(ls fuzz/*_fuzz.cpp | xargs -n1 basename | sed 's/_fuzz.cpp//' | tr '\n' ' '))}"
secs="${2:-60}"
shift $(( $# >= 2 ? 2 : 1 ))
[[ -f "fuzz/${name}_fuzz.cpp" ]] || { echo "fuzz.sh: no fuzz/${name}_fuzz.cpp" >&2; exit 2; }

san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGPTOSS_FUZZ=ON -DGPTOSS_TESTS=OFF \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DGPTOSS_CUDA=OFF \
  -DCMAKE_C_FLAGS="$san" -DCMAKE_CXX_FLAGS="$san" >/dev/null
cmake --build build-fuzz --target "${name}_fuzz" -j"${FUZZ_JOBS:-2}"

export GPTOSS_SHARED_DIR="${GPTOSS_SHARED_DIR:-$(cd .. && pwd)/shared}"
mkdir -p "fuzz/out/${name}"
case "$name" in
  parquet) seeds=(tests/io/data tests/io/data/pyarrow); max_len=65536 ;;  # the reader's test fixtures
  *) seeds=("fuzz/corpus/${name}"); max_len=4096 ;;
esac
exec build-fuzz/"${name}_fuzz" "fuzz/out/${name}" "${seeds[@]}" \
  -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 -artifact_prefix=fuzz/out/ \
  -print_final_stats=1 "$@"
