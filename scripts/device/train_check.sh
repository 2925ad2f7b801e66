#!/usr/bin/env bash
# Runs on the GPU machine (scripts/device_bundle.sh; the tokenizer in .device/tokenizer.json): `gptoss
# train` on the CUDA backend against the CPU backend (same random tiny model with the real vocabulary,
# same data and config: the logged losses and the saved adapters must agree), then the step time on CUDA
# of the 20b (and with TRAIN_BENCH the 120b) shape: random weights, synthetic conversations. Results go to $OUT.
#   scripts/device/train_check.sh [--no-bench | --bench-only]
set -uo pipefail
cd "$(dirname "$0")/../.."
R=.device/run
TOK=$PWD/.device/tokenizer.json
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T=$(mktemp -d)
$R gptoss make-random --shape tiny --vocab 201088 --seed 3 --output $T/tiny >/dev/null 2>&1
# Synthetic conversations of n_words words (a fixed seed): "user asks, assistant thinks and answers".
make_data() {  # file count words
  python3 - "$@" <<'PY'
import json, random, sys
path, count, words = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
vocab = "alpha beta gamma delta river mountain cloud number seven eleven compute tensor kernel memory".split()
def text(n): return " ".join(rng.choice(vocab) for _ in range(n))
with open(path, "w") as f:
    for _ in range(count):
        f.write(json.dumps({"messages": [{"role": "user", "content": text(words // 4)},
            {"role": "assistant", "thinking": text(words // 4), "content": text(words // 2)}]}) + "\n")
PY
}
config() {  # model output steps batch rank data-name
  cat <<YAML
model: {model_name: $1, tokenizer_name: $TOK}
data:
  train:
    datasets: [{dataset_path: $T/data_$6.jsonl}]
    collator_name: text_completions_only_with_padding
training:
  trainer_type: TRL_SFT
  use_peft: true
  output_dir: $2
  max_steps: $3
  per_device_train_batch_size: $4
  learning_rate: 0.02
  lr_scheduler_type: constant
  logging_steps: 1
  save_steps: 0
peft: {lora_r: $5, lora_alpha: $((2 * $5)), lora_target_modules: [q_proj, k_proj, v_proj, o_proj]}
YAML
}
if [[ "${1:-}" != --bench-only ]]; then
echo "== gptoss train: CUDA vs CPU (random tiny model, real vocabulary, 6 steps)" | tee "$OUT/train_check.txt"
make_data $T/data_small.jsonl 4 40
for d in cpu cuda; do
  config $T/tiny $T/out_$d 6 2 4 small > $T/tiny_$d.yaml
  $R gptoss train -c $T/tiny_$d.yaml --device $d > /dev/null 2> $T/log_$d.txt || { echo "train --device $d failed:"; tail -5 $T/log_$d.txt; }
  grep '^step' $T/log_$d.txt | sed "s/^/$d: /"
done 2>&1 | tee -a "$OUT/train_check.txt"
python3 - $T/out_cpu/adapter_model.safetensors $T/out_cuda/adapter_model.safetensors <<'PY' 2>&1 | tee -a "$OUT/train_check.txt"
import sys, torch
from safetensors.torch import load_file
a, b = load_file(sys.argv[1]), load_file(sys.argv[2])
num = sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in a)
den = sum(float((a[k].float() ** 2).sum()) for k in a)
print(f"adapter after 6 steps: cuda vs cpu rel error {(num / den) ** 0.5:.3e} over {len(a)} tensors")
PY
fi
[[ "${1:-}" == --no-bench ]] && exit 0
# Shapes and conversation lengths to time: TRAIN_BENCH="20b:400,1600 120b:400" (the default: 20b only);
# TRAIN_PROFILE=1 runs each again with --profile (the time of every backend op); TRAIN_CKPT="false true"
# runs each without and with gradient checkpointing (default: without).
for spec in ${TRAIN_BENCH:-20b:400,1600}; do
  shape=${spec%%:*}
  dir=/tmp/r$shape; [[ $shape == 120b ]] && dir=/dev/shm/r120b  # the 120b's 65 GB do not fit /tmp
  echo "== gptoss train on the $shape shape (CUDA; random weights; MXFP4 experts)"
  [[ -d $dir ]] || $R gptoss make-random --shape $shape --output $dir --seed 1 2>&1 | tail -1
  lengths=${spec#*:}
  for w in ${lengths//,/ }; do
    for ckpt in ${TRAIN_CKPT:-false}; do
      make_data $T/data_w$w.jsonl 16 $w
      config $dir $T/out_${shape}_$w 4 4 8 w$w > $T/${shape}_$w.yaml
      echo "-- $w words a conversation, gradient checkpointing $ckpt"
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > $T/mem.txt &
      smi=$!
      $R gptoss train -c $T/${shape}_$w.yaml --device cuda --training.enable_gradient_checkpointing $ckpt \
        > /dev/null 2> $T/log.txt || tail -5 $T/log.txt
      kill $smi
      if [[ -n "${TRAIN_PROFILE:-}" ]]; then  # the same run with every op timed (gptoss train --profile)
        $R gptoss train -c $T/${shape}_$w.yaml --device cuda --profile 2>&1 >/dev/null | sed -n '/time by backend op/,$p'
      fi
      grep -E '^step|^train: [0-9]' $T/log.txt | head -8
      echo "peak GPU memory used: $(sort -n $T/mem.txt | tail -1) MiB"
    done
  done
done 2>&1 | tee "$OUT/train_bench.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$OUT/train_bench.txt"
