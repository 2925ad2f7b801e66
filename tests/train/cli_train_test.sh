#!/usr/bin/env bash
# gptoss train end to end on a random tiny model with the real tokenizer (vocab 201088): LoRA SFT on two
# harmony conversations lowers the loss, saves PEFT adapters (a checkpoint and the final one) that
# score/infer load, gradient checkpointing gives the same losses, a hub dataset's Parquet shard trains
# from the hub cache, overrides reach list items, and bad configs fail with a message and no output dir.
# Env: GPTOSS_BINARY, GPTOSS_SHARED_DIR.
set -euo pipefail
BIN=${GPTOSS_BINARY:?set GPTOSS_BINARY}
TOK=${GPTOSS_SHARED_DIR:?set GPTOSS_SHARED_DIR}/data/tokenizer/tokenizer.json
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$BIN" make-random --shape tiny --vocab 201088 --seed 3 --output "$TMP/model" >/dev/null 2>&1
cat > "$TMP/data.jsonl" <<'JSONL'
{"messages": [{"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "thinking": "A simple fact.", "content": "Paris."}]}
{"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
JSONL
cat > "$TMP/train.yaml" <<YAML
model:
  model_name: $TMP/model
  tokenizer_name: $TOK
data:
  train:
    datasets:
      - dataset_name: HuggingFaceH4/Multilingual-Thinking
    collator_name: text_completions_only_with_padding
training:
  trainer_type: TRL_SFT
  use_peft: true
  output_dir: $TMP/out
  max_steps: 6
  per_device_train_batch_size: 2
  learning_rate: 0.02
  lr_scheduler_type: constant
  logging_steps: 1
  save_steps: 3
peft:
  lora_r: 4
  lora_alpha: 8
  lora_target_modules: [q_proj, k_proj, v_proj, o_proj]
YAML

# The recipe's hub dataset, not in the cache and offline: a clear error, nothing written.
err=$(HF_HUB_OFFLINE=1 HF_HUB_CACHE="$TMP/cache" "$BIN" train -c "$TMP/train.yaml" 2>&1 >/dev/null) \
  && fail "a hub dataset that is not in the cache trained offline"
[[ "$err" == *"HuggingFaceH4/Multilingual-Thinking"* && "$err" == *"HF_HUB_OFFLINE"* && "$err" == *"dataset_path"* ]] \
  || fail "offline hub dataset error: $err"
[[ ! -e "$TMP/out" ]] || fail "a failed run left $TMP/out"
# The same dataset from the hub cache (the layout huggingface_hub writes), offline: its Parquet shard
# (Multilingual-Thinking's columns, tests/io/data; its first 3 rows, as row 4 has no messages) trains.
snap="$TMP/cache/datasets--HuggingFaceH4--Multilingual-Thinking/snapshots/0123456789abcdef0123456789abcdef01234567"
mkdir -p "$snap/data" "$TMP/cache/datasets--HuggingFaceH4--Multilingual-Thinking/refs"
echo -n 0123456789abcdef0123456789abcdef01234567 > "$TMP/cache/datasets--HuggingFaceH4--Multilingual-Thinking/refs/main"
cp "$(dirname "${BASH_SOURCE[0]}")/../io/data/mt_snappy_dict_v1.parquet" "$snap/data/train-00000-of-00001.parquet"
HF_HUB_OFFLINE=1 HF_HUB_CACHE="$TMP/cache" "$BIN" train -c "$TMP/train.yaml" --training.max_steps 2 \
  "--data.train.datasets[0].split" "train[:3]" --training.output_dir "$TMP/hubdata" >/dev/null 2>"$TMP/log0" || { cat "$TMP/log0" >&2; fail "train on the cached hub dataset failed"; }
[[ $(grep -c '^step [12]/2 ' "$TMP/log0") == 2 ]] || fail "expected 2 steps on the hub dataset: $(cat "$TMP/log0")"
[[ -f "$TMP/hubdata/adapter_model.safetensors" ]] || fail "no adapter from the hub dataset run"
err=$("$BIN" train -c "$TMP/train.yaml" --training.use_peft false 2>&1 >/dev/null) && fail "use_peft false trained"
[[ "$err" == *"training.use_peft"* ]] || fail "use_peft error: $err"

"$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  >"$TMP/stdout" 2>"$TMP/log" || { cat "$TMP/log" >&2; fail "train failed"; }
losses=$(grep -o 'loss [0-9.]*' "$TMP/log" | awk '{print $2}')
first=$(echo "$losses" | head -1)
last=$(echo "$losses" | tail -1)
[[ $(echo "$losses" | wc -l) == 6 ]] || fail "expected 6 logged steps: $(cat "$TMP/log")"
python3 -c "import sys; f, l = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if l < f - 0.05 else 1)" "$first" "$last" \
  || fail "loss did not fall: $first -> $last"
for d in "$TMP/out" "$TMP/out/checkpoint-3"; do
  [[ -f "$d/adapter_config.json" && -f "$d/adapter_model.safetensors" ]] || fail "no PEFT adapter in $d"
done
grep -q '"peft_type": "LORA"' "$TMP/out/adapter_config.json" || fail "adapter_config.json: $(cat "$TMP/out/adapter_config.json")"
ls "$TMP/out" | grep -q tmp && fail "temporary files left in $TMP/out: $(ls "$TMP/out")"

# Gradient checkpointing (the recipe's enable_gradient_checkpointing): the same losses.
"$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  --training.enable_gradient_checkpointing true --training.save_steps 0 --training.output_dir "$TMP/ckpt" \
  >/dev/null 2>"$TMP/log_ckpt" || { cat "$TMP/log_ckpt" >&2; fail "train with gradient checkpointing failed"; }
grep -q "gradient checkpointing" "$TMP/log_ckpt" || fail "no gradient checkpointing in the log: $(cat "$TMP/log_ckpt")"
python3 -c "import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); sys.exit(0 if len(a) == 6 and len(a) == len(b) and max(abs(float(x) - float(y)) for x, y in zip(a, b)) < 1e-3 else 1)" \
  "$losses" "$(grep -o 'loss [0-9.]*' "$TMP/log_ckpt" | awk '{print $2}')" \
  || fail "checkpointed losses differ: $losses vs $(grep -o 'loss [0-9.]*' "$TMP/log_ckpt")"

# Resuming from checkpoint-3 (adapter, AdamW moments, data position) ends where the straight run ended.
[[ -f "$TMP/out/checkpoint-3/trainer_state.json" && -f "$TMP/out/checkpoint-3/optimizer.safetensors" ]] \
  || fail "checkpoint-3 has no trainer state: $(ls "$TMP/out/checkpoint-3")"
"$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  --training.resume_from_checkpoint "$TMP/out/checkpoint-3" --training.output_dir "$TMP/resumed" \
  >/dev/null 2>"$TMP/log2" || { cat "$TMP/log2" >&2; fail "resume failed"; }
grep -q "resumed from $TMP/out/checkpoint-3 at step 3" "$TMP/log2" || fail "no resume line: $(cat "$TMP/log2")"
[[ $(grep -c '^step ' "$TMP/log2") == 3 ]] || fail "a resumed run should take steps 4-6: $(cat "$TMP/log2")"
cmp -s "$TMP/out/adapter_model.safetensors" "$TMP/resumed/adapter_model.safetensors" \
  || fail "resumed run's adapter differs from the straight run's"
"$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  --training.try_resume_from_last_checkpoint true --training.max_steps 7 >/dev/null 2>"$TMP/log3" \
  || { cat "$TMP/log3" >&2; fail "try_resume failed"; }
grep -q "resumed from $TMP/out/checkpoint-6 at step 6" "$TMP/log3" || fail "try_resume did not take the last checkpoint: $(cat "$TMP/log3")"
err=$("$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  --training.resume_from_checkpoint "$TMP/model" 2>&1 >/dev/null) && fail "resumed from a model directory"
[[ "$err" == *"trainer_state.json"* ]] || fail "bad resume error: $err"

# Evaluation: the mean loss over data.validation every eval_steps (here the training data itself, so the
# step-3 eval loss must fall below step 1's training loss); none configured is an error naming the key.
"$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  "--data.validation.datasets[0].dataset_path" "$TMP/data.jsonl" --training.eval_strategy steps \
  --training.eval_steps 3 --training.max_steps 3 --training.output_dir "$TMP/eval" >/dev/null 2>"$TMP/log4" \
  || { cat "$TMP/log4" >&2; fail "train with evaluation failed"; }
eval_loss=$(grep -o 'eval_loss [0-9.]*' "$TMP/log4" | awk '{print $2}')
[[ $(echo "$eval_loss" | wc -l) == 1 && -n "$eval_loss" ]] || fail "expected one eval_loss line: $(cat "$TMP/log4")"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$eval_loss" "$first" \
  || fail "eval loss $eval_loss after 3 steps is not below the first training loss $first"
err=$("$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/data.jsonl" \
  --training.eval_strategy steps 2>&1 >/dev/null) && fail "eval without validation data trained"
[[ "$err" == *"data.validation.datasets is empty"* ]] || fail "bad eval error: $err"

# Epochs bound the run when max_steps is unset: 3 conversations, 2 a step, 2 epochs = 4 steps (the second
# of each epoch takes the one example left); with --profile.
sed -n 1p "$TMP/data.jsonl" > "$TMP/three.jsonl"; cat "$TMP/data.jsonl" >> "$TMP/three.jsonl"
"$BIN" train -c "$TMP/train.yaml" "--data.train.datasets[0].dataset_path" "$TMP/three.jsonl" \
  --training.max_steps -1 --training.num_train_epochs 2 --training.save_steps 0 --training.output_dir "$TMP/epochs" \
  --profile >/dev/null 2>"$TMP/log5" || { cat "$TMP/log5" >&2; fail "epoch-bound run failed"; }
[[ $(grep -c '^step [1-4]/4 ' "$TMP/log5") == 4 ]] || fail "expected 4 steps of 4: $(cat "$TMP/log5")"
# --profile: the time of the forward's and the backward's ops at the end.
for op in matmul_bf16 moe_bwd attention_bwd lora_bwd cross_entropy; do
  grep -q "^$op " "$TMP/log5" || fail "--profile table has no $op row: $(cat "$TMP/log5")"
done

# The trained adapter loads and changes the model's output.
"$BIN" score --model "$TMP/model" --tokens 200005,1234,5 --output "$TMP/base.safetensors" >/dev/null 2>&1
"$BIN" score --model "$TMP/model" --adapter "$TMP/out" --tokens 200005,1234,5 --output "$TMP/lora.safetensors" \
  >/dev/null 2>&1 || fail "score with the trained adapter failed"
cmp -s "$TMP/base.safetensors" "$TMP/lora.safetensors" && fail "the trained adapter changes nothing"
echo "train: loss $first -> $last; adapters saved and loaded"
