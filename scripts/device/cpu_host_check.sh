#!/usr/bin/env bash
# Runs on the GPU machine (see scripts/device_bundle.sh, bundled with build/kernels_bench): the CPU kernels
# on that host's CPU, 2 threads (as the development VM) and all threads, to tell this code's limits from
# the development VM's (nested paging, shared host). Results go to $OUT/cpu_host.txt.
#   scripts/device/cpu_host_check.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
R=.device/run
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
  grep -m1 "model name" /proc/cpuinfo; nproc
  grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E "^avx512(f|bw|vl|_bf16|_vnni)$" | tr '\n' ' '; echo
  cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
  systemd-detect-virt 2>/dev/null || true
  for t in 2 "$(nproc)"; do
    echo "== GPTOSS_THREADS=$t"
    GPTOSS_THREADS=$t $R kernels_bench --reps 5 --skip-lm-head 2>&1 | grep -E "^\|"
  done
} 2>&1 | tee "$OUT/cpu_host.txt"
