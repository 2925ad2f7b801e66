#!/usr/bin/env bash
# Runs on the GPU machine (see scripts/device_bundle.sh): the CPU backend on that host's CPU with a random
# 20b-shape model, all threads (full bench) and 2 threads (decode at batch 1 and 16), as a second CPU
# platform next to the 2-vCPU development VM. JSON results go to $OUT.
#   scripts/device/cpu_20b_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
R=.device/run
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
M=/tmp/r20b
[[ -f $M/config.json ]] || $R gptoss make-random --shape 20b --output $M >/dev/null
$R gptoss bench --model $M --gen 16 --repeats 2 --batch 1,4,16,64 --json >"$OUT/cpu_20b_all.json" 2>"$OUT/cpu_20b_all.err"
tail -3 "$OUT/cpu_20b_all.err"
GPTOSS_THREADS=2 $R gptoss bench --model $M --gen 16 --repeats 2 --batch 1,16 --no-prefill --json \
  >"$OUT/cpu_20b_2t.json" 2>"$OUT/cpu_20b_2t.err"
tail -3 "$OUT/cpu_20b_2t.err"
