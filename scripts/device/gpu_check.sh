#!/usr/bin/env bash
# Runs on the GPU machine (see scripts/device_bundle.sh): CUDA op tests, the CUDA forward against the
# transformers oracle of the tiny fixtures, optional transformers check of a gptoss-quantized model,
# optional 20b-shape benchmark. Everything it measures goes to $OUT.
#   scripts/device/gpu_check.sh [--bench]
set -uo pipefail
cd "$(dirname "$0")/../.."
R=.device/run
FX=.device/fixtures
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# The tests find the fixtures under $GPTOSS_SHARED_DIR/fixtures/gpt-oss-tiny (the build's ../shared is not here).
mkdir -p /tmp/gptoss_shared/fixtures && ln -sfn "$PWD/$FX" /tmp/gptoss_shared/fixtures/gpt-oss-tiny
export GPTOSS_SHARED_DIR=/tmp/gptoss_shared
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
if [[ "${1:-}" != --hf-only ]]; then
echo "== CUDA ops vs CPU"
$R test_backend_cuda 2>&1 | tail -15 | tee "$OUT/cuda_ops.txt"
echo "== CUDA forward vs transformers (tiny fixtures)"
for v in mxfp4 bf16; do
  for s in 0 1 2; do
    toks=$(python3 scripts/device/fixture_tokens.py $FX/reference.safetensors $v.seq$s.input_ids)
    $R gptoss score --model $FX/$v --tokens "$toks" --output /tmp/ours_${v}_$s.safetensors --device cuda >/dev/null 2>"$OUT/score_err.txt" || cat "$OUT/score_err.txt"
    python3 scripts/device/compare_logits.py $FX/reference.safetensors $v.seq$s.logits /tmp/ours_${v}_$s.safetensors "cuda $v seq$s"
  done
  toks=$(python3 scripts/device/fixture_tokens.py $FX/reference.safetensors $v.seq0.input_ids)
  want=$(python3 scripts/device/fixture_tokens.py $FX/reference.safetensors $v.greedy.tokens)
  got=$($R gptoss generate --model $FX/$v --tokens "$toks" --max-new-tokens 24 --temperature 0 --device cuda | tail -1)
  n0=$(echo "$toks" | tr ',' '\n' | wc -l)
  want_new=$(echo "$want" | cut -d, -f$((n0 + 1))-)
  [[ "$got" == "$want_new" ]] && echo "cuda $v greedy: identical (24 tokens)" || echo "cuda $v greedy: MISMATCH got=$got want=$want_new"
done 2>&1 | tee "$OUT/golden.txt"
if python3 -c "import peft" 2>/dev/null; then
  echo "== LoRA: gptoss (CPU and CUDA) against transformers + peft on the bf16 fixture"
  python3 scripts/device/lora_oracle.py $FX/bf16 /tmp/lora_oracle 2>&1 | tail -1
  toks=$(python3 scripts/device/fixture_tokens.py /tmp/lora_oracle/reference.safetensors input_ids)
  for d in cpu cuda; do
    $R gptoss score --model $FX/bf16 --adapter /tmp/lora_oracle/adapter --tokens "$toks" --output /tmp/lora_$d.safetensors --device $d >/dev/null
    python3 scripts/device/compare_logits.py /tmp/lora_oracle/reference.safetensors logits /tmp/lora_$d.safetensors "lora $d vs peft"
  done 2>&1 | tee "$OUT/lora.txt"
fi
echo "== CUDA vs CPU on a 150-token prompt (the prefill-sized tensor-core matmul and MoE paths)"
long=$(python3 -c "print(','.join(str((i * 7919) % 1000) for i in range(150)))")
for v in mxfp4 bf16; do
  for d in cpu cuda; do $R gptoss score --model $FX/$v --tokens "$long" --output /tmp/long_${v}_$d.safetensors --device $d >/dev/null; done
  python3 scripts/device/compare_logits.py /tmp/long_${v}_cpu.safetensors logits /tmp/long_${v}_cuda.safetensors "cuda vs cpu $v 150 tokens"
done 2>&1 | tee "$OUT/long_prompt.txt"
fi
if [[ -d .device/quantized ]]; then
  echo "== transformers on the gptoss-quantized tiny model"
  toks=$(python3 scripts/device/fixture_tokens.py $FX/reference.safetensors mxfp4.seq1.input_ids)
  # control first: the fixture's own MXFP4 checkpoint through the same check
  for m in $FX/mxfp4 .device/quantized; do
    $R gptoss score --model $m --tokens "$toks" --output /tmp/q.safetensors --device cpu >/dev/null
    echo "model $m:"
    python3 scripts/device/hf_check_quantized.py $m /tmp/q.safetensors "$toks" $FX/bf16 2>&1 | grep hf_check
  done | tee "$OUT/hf_quantized.txt"
fi
[[ "${1:-}" == --hf-only ]] && exit 0
if [[ "${1:-}" == --bench ]]; then
  echo "== 20b-shape random model: bench on CUDA"
  $R gptoss make-random --shape 20b --output /tmp/r20b --seed 1 2>&1 | tail -1
  $R gptoss bench --model /tmp/r20b --device cuda --prompt ${GPTOSS_BENCH_PROMPT:-32} --gen 32 --repeats 2 --batch 1,8,64 --json > "$OUT/bench_cuda_20b.json" 2>"$OUT/bench_err.txt"
  cat "$OUT/bench_cuda_20b.json"; tail -5 "$OUT/bench_err.txt"
fi
