#!/usr/bin/env bash
# Packs build/gptoss (+ chosen test/bench binaries) with every non-system shared library they need into
# .device/ so they run on the GPU machine (Ubuntu 24.04, CUDA 13 driver/toolkit, none of our Debian -dev
# packages). glibc and the CUDA libraries come from the device; everything else travels.
#   scripts/device_bundle.sh [extra binaries...]
# On the device:  .device/run gptoss --help
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
rm -rf "$out"; mkdir -p "$out/bin" "$out/lib"
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
bins=("${GPTOSS_BUNDLE_GPTOSS:-build/gptoss}" "$@")
for b in "${bins[@]}"; do
  cp "$b" "$out/bin/"
  ldd "$b" | awk '/=>/ {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libresolv.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*|libcuda.so*|libcudart.so*|libcublas*.so*) ;;
      *) cp -n "$lib" "$out/lib/" ;;
    esac
  done
done
# libstdc++ from g++ 12 is older than Ubuntu 24.04's; the device's own is newer and compatible, so skip it.
rm -f "$out/lib/libstdc++.so"*
cat > "$out/run" <<'EOR'
#!/usr/bin/env bash
here="$(cd "$(dirname "$0")" && pwd)"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
exe="$1"; shift
exec "$here/bin/$exe" "$@"
EOR
chmod +x "$out/run"
du -sh "$out"
