#!/usr/bin/env bash
# `gptoss infer` batch with engine REMOTE against a fault-injecting loopback server (fault_proxy.mjs):
# 503, 429 + Retry-After, cut connections, malformed bodies and timeouts are retried; every row comes out
# exactly once, in order, with one retry per fault; a 400 is not retried and ends the run with an error
# naming the row. (Giving up after max_retries with the 1/10/30 s schedule is tests/remote/remote_test.cpp's,
# where waits are scaled down.)
set -euo pipefail
: "${GPTOSS_BINARY:?}" "${GPTOSS_SOURCE_DIR:?}"
command -v node >/dev/null || { echo "SKIPPED: node unavailable"; exit 0; }
work=$(mktemp -d)
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

node "$GPTOSS_SOURCE_DIR/tests/remote/fault_proxy.mjs" >"$work/port" &
pid=$!
# Up to 60 s: node starts in well under a second alone, but took over 5 s once as the first test of the
# full parallel suite.
for _ in $(seq 1 600); do
  [[ -s "$work/port" ]] && break
  kill -0 "$pid" 2>/dev/null || fail "fault server exited"
  sleep 0.1
done
port=$(cat "$work/port")
[[ -n "$port" ]] || fail "fault server did not start in 60 s"

cat >"$work/remote.yaml" <<YAML
model:
  model_name: test-model
engine: REMOTE_VLLM
remote_params:
  api_url: http://127.0.0.1:$port/v1/chat/completions
  num_workers: 4
  max_retries: 3
  connection_timeout: 1.0
YAML

n=30
for i in $(seq 1 $n); do echo "{\"messages\": [{\"role\": \"user\", \"content\": \"row $i\"}]}"; done >"$work/in.jsonl"
start=$(date +%s)
"$GPTOSS_BINARY" infer -c "$work/remote.yaml" -q --input_path "$work/in.jsonl" --output_path "$work/out.jsonl" ||
  fail "batch with transient faults failed"
echo "ok - batch with faults finished in $(( $(date +%s) - start )) s"
node -e '
  const fs = require("fs");
  const rows = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
  if (rows.length !== Number(process.argv[2])) throw new Error(`rows: ${rows.length}`);
  rows.forEach((r, i) => {
    const want = `row ${i + 1}`;
    if (r.messages[0].content !== want) throw new Error(`row ${i}: out of order`);
    const answers = r.messages.filter((m) => m.role === "assistant");
    if (answers.length !== 1 || answers[0].content !== `echo: ${want}`) throw new Error(`row ${i}: ${JSON.stringify(answers)}`);
  });' "$work/out.jsonl" "$n" || fail "batch output"
curl -s "http://127.0.0.1:$port/stats" >"$work/stats.json"
node -e '
  const a = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).attempts;
  for (let i = 1; i <= Number(process.argv[2]); i++) {
    const want = i % 6 === 0 ? 1 : 2;  // one retry per injected fault, none otherwise
    if (a[`row ${i}`] !== want) throw new Error(`row ${i}: ${a[`row ${i}`]} attempts, expected ${want}`);
  }' "$work/stats.json" "$n" || fail "attempt counts: $(cat "$work/stats.json")"
echo "ok - $n rows exactly once, in order; one retry per fault"

echo '{"messages": [{"role": "user", "content": "bad request"}]}' >"$work/bad.jsonl"
set +e
out=$("$GPTOSS_BINARY" infer -c "$work/remote.yaml" -q --input_path "$work/bad.jsonl" --output_path "$work/bad_out.jsonl" 2>&1)
rc=$?
set -e
[[ $rc -ne 0 ]] || fail "a 400 should fail the run"
grep -q "HTTP 400" <<<"$out" || fail "400 message: $out"
grep -q "1 attempt" <<<"$out" || fail "400 must not be retried: $out"
echo "ok - 400 is final: $out"
