#!/usr/bin/env bash
# `gptoss infer` with engine REMOTE against our own `gptoss serve` on loopback (scripted model):
# batch rows all present, in order, once; interactive streaming; a missing key fails before any request.
set -euo pipefail
: "${GPTOSS_BINARY:?}" "${GPTOSS_SHARED_DIR:?}"
tok="$GPTOSS_SHARED_DIR/data/tokenizer/tokenizer.json"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat >"$work/script.json" <<'JSON'
{"default": "<|channel|>analysis<|message|>Thinking it over.<|end|><|start|>assistant<|channel|>final<|message|>Remote hello.<|return|>"}
JSON
"$GPTOSS_BINARY" serve --scripted "$work/script.json" --tokenizer "$tok" --port 0 --api-key k-123 -q \
  >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
port=""
for _ in $(seq 1 300); do
  port=$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" 2>/dev/null | head -1 | cut -d: -f2 || true)
  [[ -n "$port" ]] && break
  sleep 0.1
done
[[ -n "$port" ]] || fail "serve did not start: $(cat "$work/serve.err")"

cat >"$work/remote.yaml" <<YAML
model:
  model_name: gpt-oss-scripted
engine: REMOTE
remote_params:
  api_url: http://127.0.0.1:$port/v1/chat/completions
  api_key_env_varname: GPTOSS_TEST_REMOTE_KEY
  num_workers: 4
  max_retries: 2
generation:
  max_new_tokens: 64
YAML

n=24
for i in $(seq 1 $n); do echo "{\"messages\": [{\"role\": \"user\", \"content\": \"row $i\"}]}"; done >"$work/in.jsonl"
GPTOSS_TEST_REMOTE_KEY=k-123 "$GPTOSS_BINARY" infer -c "$work/remote.yaml" -q \
  --input_path "$work/in.jsonl" --output_path "$work/out.jsonl" || fail "batch infer failed"
[[ $(wc -l <"$work/out.jsonl") -eq $n ]] || fail "expected $n rows, got $(wc -l <"$work/out.jsonl")"
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  rows.forEach((r, i) => {
    const m = r.messages;
    if (m[0].content !== `row ${i + 1}`) throw new Error(`row ${i}: out of order: ${m[0].content}`);
    const last = m[m.length - 1];
    if (last.role !== "assistant" || last.content !== "Remote hello.") throw new Error(`row ${i}: ${JSON.stringify(last)}`);
    if (m.filter((x) => x.role === "assistant").length !== 1) throw new Error(`row ${i}: duplicated answer`);
  });' "$work/out.jsonl" || fail "batch output rows"
echo "ok - batch: $n rows, in order, once each"

out=$(printf 'hello there\n/exit\n' | GPTOSS_TEST_REMOTE_KEY=k-123 "$GPTOSS_BINARY" infer -i -c "$work/remote.yaml" -q 2>&1) ||
  fail "interactive infer failed: $out"
grep -q "Remote hello." <<<"$out" || fail "interactive reply missing: $out"
echo "ok - interactive"

# A wrong key is the server's 401: no retry, a clear error naming the status.
set +e
out=$(GPTOSS_TEST_REMOTE_KEY=wrong "$GPTOSS_BINARY" infer -c "$work/remote.yaml" -q \
  --input_path "$work/in.jsonl" --output_path "$work/out2.jsonl" 2>&1)
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "wrong key should fail"
grep -q "401" <<<"$out" || fail "error should name HTTP 401: $out"
echo "ok - wrong key: $(head -c 160 <<<"$out")"

# A missing key is reported before any request.
set +e
printf 'model:\n  model_name: openai/gpt-oss-120b\nengine: TOGETHER\n' >"$work/together.yaml"
out=$(env -u TOGETHER_API_KEY "$GPTOSS_BINARY" infer -c "$work/together.yaml" -q \
  --input_path "$work/in.jsonl" --output_path "$work/out3.jsonl" 2>&1)
rc=$?
set -e
[[ $rc -eq 2 ]] || fail "missing key: exit $rc, expected 2: $out"
grep -q "TOGETHER_API_KEY" <<<"$out" || fail "missing key message: $out"
echo "ok - missing key: $out"
echo PASS
