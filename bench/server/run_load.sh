#!/usr/bin/env bash
# Load test of `gptoss serve` on loopback: a tiny random gpt-oss with the full o200k_harmony vocabulary
# (gptoss make-random), 256 concurrent streaming clients for 60 s (bench/server/load.mjs), then checks
# that every KV block is back. Not part of the test suite (it runs a minute and loads every core).
#
#   bench/server/run_load.sh [GPTOSS_BINARY] [OUT_JSON]      env: CLIENTS=256 SECONDS=60 MAX_TOKENS=32
#                                                                  TOKENIZER=.../tokenizer.json SCRIPTED=0|1
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-$root/build/gptoss}"
out="${2:-$root/bench/results/server-load.json}"
tok="${TOKENIZER:-$root/../shared/data/tokenizer/tokenizer.json}"
clients="${CLIENTS:-256}" seconds="${SECONDS_RUN:-60}" max_tokens="${MAX_TOKENS:-32}"
work=$(mktemp -d)
pid=""
trap '[[ -n "$pid" ]] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

if [[ "${SCRIPTED:-0}" == 1 ]]; then
  echo '{"default": "<|channel|>analysis<|message|>Thinking.<|end|><|start|>assistant<|channel|>final<|message|>Hello from the scripted model, streaming a few tokens for the load test.<|return|>"}' >"$work/s.json"
  args=(--scripted "$work/s.json" --tokenizer "$tok" --max-active "$clients")
  label="scripted fake model (ScriptedRunner, vocab 201088)"
else
  "$bin" make-random --shape tiny --vocab 201088 --seed 1 --output "$work/tiny" >/dev/null
  cp "$tok" "$work/tiny/tokenizer.json"
  printf 'model:\n  model_name: %s\nengine: NATIVE\nengine_params:\n  device: cpu\n  max_num_seqs: %s\n  max_model_len: 512\n  kv_cache_gb: 1\n' \
    "$work/tiny" "$clients" >"$work/tiny.yaml"
  args=(-c "$work/tiny.yaml")
  label="tiny random gpt-oss (hidden 128, 4 layers, vocab 201088), CPU backend"
fi
"$bin" serve --port 0 -q --max-queue "$clients" "${args[@]}" >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
for _ in $(seq 1 600); do
  port=$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "${port:-}" ]] || { cat "$work/serve.err"; exit 1; }
node "$root/bench/server/load.mjs" --base "http://127.0.0.1:$port/v1" --clients "$clients" --seconds "$seconds" \
  --max-tokens "$max_tokens" --out "$out" --label "$label; $(nproc) cores; $(uname -n)"
