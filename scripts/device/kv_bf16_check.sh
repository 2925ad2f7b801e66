#!/usr/bin/env bash
# Runs on the GPU machine (scripts/device_bundle.sh build/test_backend_cuda): the bf16 KV cache
# (engine_params.kv_cache_dtype: bfloat16). The CUDA op and forward tests (both KV types against the CPU),
# decode of the 20b shape at a 4096-token context with an f32 and a bf16 cache, and the 20b in 16 GiB
# (mem16_check.sh) with a bf16 cache. Output in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
R=.device/run
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
echo "== CUDA ops and forwards vs CPU"
$R test_backend_cuda 2>&1 | grep -E "largest relative|FAILED|PASSED|OK \] .*(Kv|Forward|Rope)" | tee "$OUT/cuda_tests.txt"
export MODEL=/tmp/r20b
$R gptoss make-random --shape 20b --output $MODEL --seed 1 2>&1 | tail -1
for kv in float32 bfloat16; do
  echo "== decode at a 4096-token context, $kv KV cache"
  $R gptoss bench --model $MODEL --device cuda --no-prefill --depth 4096 --gen 32 --repeats 2 --batch 1,8,32 \
    --kv-cache-dtype $kv --json > "$OUT/bench_depth4096_$kv.json" 2>"$OUT/bench_err_$kv.txt"
  python3 -c "
import json,sys; d=json.load(open('$OUT/bench_depth4096_$kv.json'))
for r in d['results']: print('$kv', r['phase'], 'batch', r['batch'], 'depth', r['prompt_tokens'], round(r['tok_s'],1), 'tok/s')" || tail -5 "$OUT/bench_err_$kv.txt"
done 2>&1 | tee "$OUT/depth.txt"
KV=bfloat16 scripts/device/mem16_check.sh 2>&1 | tee "$OUT/mem16_bf16.txt"
