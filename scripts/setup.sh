#!/usr/bin/env bash
# Installs every build dependency from Debian's packages (idempotent, as root on a fresh Debian 12),
# then configures and builds build/gptoss with ccache.
#   scripts/setup.sh            install + build
#   GPTOSS_NO_INSTALL=1 ...     build only (dependencies already present)
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache keys on paths relative to the checkout, so clones in other folders (CI) share the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libcpp-httplib-dev libssl-dev
  libcurl4-openssl-dev libpcre2-dev libfmt-dev libedit-dev libsnappy-dev libzstd-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev tmux python3
)
# Node.js + npm (the openai-client test, the tiktoken benchmark): Debian's packages only where the
# machine has no node already (a newer one from elsewhere conflicts with Debian's npm).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

if [[ "${GPTOSS_NO_INSTALL:-0}" != 1 ]]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=""; [[ $(id -u) == 0 ]] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

# nvcc is optional: CMake compiles the CUDA backend when it finds it, else links the stub backend.
if [[ -x /usr/local/cuda/bin/nvcc ]] && ! command -v nvcc >/dev/null; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

build_dir="${GPTOSS_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="${GPTOSS_BUILD_TYPE:-Release}" \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache ${GPTOSS_CMAKE_ARGS:-}
cmake --build "$build_dir" --target gptoss -j "$(nproc)"
echo "setup: built $build_dir/gptoss"
