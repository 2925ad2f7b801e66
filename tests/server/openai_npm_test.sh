#!/usr/bin/env bash
# The official `openai` npm client against `gptoss serve` on loopback: the scripted fake model (exact
# texts, tool calls) and a tiny random full-vocabulary model (shapes). Skips (exit 0) only when npm
# cannot install the package.
set -euo pipefail
: "${GPTOSS_BINARY:?}" "${GPTOSS_SHARED_DIR:?}" "${GPTOSS_SOURCE_DIR:?}"
here="$GPTOSS_SOURCE_DIR/tests/server"
tok="$GPTOSS_SHARED_DIR/data/tokenizer/tokenizer.json"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

if ! command -v npm >/dev/null || ! (cd "$work" && npm init -y >/dev/null 2>&1 &&
     timeout 180 npm install --no-audit --no-fund --silent openai@4 >/dev/null 2>&1); then
  echo "SKIPPED: npm unavailable (could not install the openai package)"
  exit 0
fi
cp "$here/openai_client.mjs" "$work/"

# Starts `gptoss serve ... --port 0` and sets $base from the port it prints.
start_server() {
  "$GPTOSS_BINARY" serve --port 0 --api-key test-key -q "$@" >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  for _ in $(seq 1 600); do
    port=$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
    [[ -n "$port" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err"; echo "FAIL: serve exited"; exit 1; }
    sleep 0.1
  done
  [[ -n "$port" ]] || { echo "FAIL: serve did not start"; exit 1; }
  base="http://127.0.0.1:$port/v1"
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

echo "# scripted model"
node "$work/openai_client.mjs" script >"$work/script.json"
start_server --scripted "$work/script.json" --tokenizer "$tok"
(cd "$work" && node openai_client.mjs scripted "$base" test-key)
stop_server

echo "# tiny random model with the full o200k_harmony vocabulary"
"$GPTOSS_BINARY" make-random --shape tiny --vocab 201088 --seed 7 --output "$work/tiny" >/dev/null 2>&1
cp "$tok" "$work/tiny/tokenizer.json"
cat >"$work/tiny.yaml" <<YAML
model:
  model_name: $work/tiny
engine: NATIVE
engine_params:
  device: cpu
  max_num_seqs: 8
  max_model_len: 1024
  kv_cache_gb: 0.25
YAML
start_server -c "$work/tiny.yaml"
(cd "$work" && node openai_client.mjs model "$base" test-key)
stop_server
echo "PASS"
