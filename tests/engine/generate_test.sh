#!/usr/bin/env bash
# gptoss generate through the engine: several --tokens run concurrently, one line of ids each, in the
# order given, equal to running each alone; the transformers greedy reference is reproduced in a batch.
# Env: GPTOSS_BINARY, GPTOSS_SHARED_DIR. Reference values are read from the fixture at run time.
set -euo pipefail
BIN=${GPTOSS_BINARY:?set GPTOSS_BINARY}
FIX=${GPTOSS_SHARED_DIR:?set GPTOSS_SHARED_DIR}/fixtures/gpt-oss-tiny
M=$FIX/mxfp4
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export GPTOSS_THREADS=${GPTOSS_THREADS:-1}  # the tiny model gains nothing from threads

ref_ids() {  # an i32 tensor of reference.safetensors as "a,b,c" (python3, no numpy)
  python3 - "$FIX/reference.safetensors" "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
s, e = h[sys.argv[2]]['data_offsets']
print(','.join(str(x) for x in struct.unpack('<%di' % ((e - s) // 4), b[8 + n + s:8 + n + e])))
PY
}

prompt=$(ref_ids mxfp4.seq0.input_ids)
greedy=$(ref_ids mxfp4.greedy.tokens)
n_prompt=$(echo "$prompt" | tr ',' '\n' | wc -l)
want=$(echo "$greedy" | cut -d, -f$((n_prompt + 1))-)
n_new=$(echo "$want" | tr ',' '\n' | wc -l)
seq1=$(ref_ids mxfp4.seq1.input_ids)
prompts=("5,6,7" "$seq1" "$prompt" "900" "$(ref_ids mxfp4.seq2.input_ids)")

# Issue-2 behaviour: one prompt, ids on the last line.
got=$("$BIN" generate --model "$M" --tokens "$prompt" --max-new-tokens "$n_new" --temperature 0 2>"$TMP/err" | tail -n 1)
[[ "$got" == "$want" ]] || fail "single request: got '$got', want '$want'"
grep -q "1 request" "$TMP/err" || fail "no statistics line on stderr: $(cat "$TMP/err")"
grep -q "huge pages" "$TMP/err" && fail "weights copied without --no-mmap: $(cat "$TMP/err")"

# --no-mmap: the weights are copied into huge pages, the same ids.
got=$("$BIN" generate --model "$M" --tokens "$prompt" --max-new-tokens "$n_new" --temperature 0 --no-mmap \
  2>"$TMP/err" | tail -n 1)
[[ "$got" == "$want" ]] || fail "--no-mmap: got '$got', want '$want'"
grep -q "weights copied to huge pages" "$TMP/err" || fail "--no-mmap: no copy in $(cat "$TMP/err")"

# One at a time.
alone=()
for p in "${prompts[@]}"; do
  alone+=("$("$BIN" generate --model "$M" --tokens "$p" --max-new-tokens "$n_new" --temperature 0 2>/dev/null | tail -n 1)")
done
[[ "${alone[2]}" == "$want" ]] || fail "reference prompt alone: '${alone[2]}'"

# All at once, in small prefill chunks: one line per request, in order, the same ids.
args=()
for p in "${prompts[@]}"; do args+=(--tokens "$p"); done
"$BIN" generate --model "$M" "${args[@]}" --max-new-tokens "$n_new" --temperature 0 --block-size 4 \
  --max-num-batched-tokens 7 >"$TMP/out" 2>"$TMP/err" || fail "batched generate failed: $(cat "$TMP/err")"
[[ $(wc -l <"$TMP/out") == "${#prompts[@]}" ]] || fail "expected ${#prompts[@]} lines, got: $(cat "$TMP/out")"
i=0
while IFS= read -r line; do
  [[ "$line" == "${alone[$i]}" ]] || fail "request $i in a batch: '$line', alone: '${alone[$i]}'"
  [[ $(echo "$line" | tr ',' '\n' | wc -l) == "$n_new" ]] || fail "request $i: '$line' is not $n_new ids"
  i=$((i + 1))
done <"$TMP/out"

# Seeded sampling: the same ids alone and in a batch.
s_alone=$("$BIN" generate --model "$M" --tokens "$seq1" --max-new-tokens 6 --temperature 1 --seed 3 2>/dev/null | tail -n 1)
s_batch=$("$BIN" generate --model "$M" --tokens "$prompt" --tokens "$seq1" --tokens 1,2 --max-new-tokens 6 \
  --temperature 1 --seed 3 2>/dev/null | sed -n 2p)
[[ "$s_alone" == "$s_batch" ]] || fail "seeded sampling depends on the batch: '$s_alone' vs '$s_batch'"

# A bf16 KV cache: batched greedy ids equal those of the same requests one at a time (both bf16), and the
# statistics line says which cache ran. (Against the f32 cache the ids may differ: K and V are rounded.)
b_alone=()
for p in "$seq1" "$prompt"; do
  b_alone+=("$("$BIN" generate --model "$M" --tokens "$p" --max-new-tokens 12 --temperature 0 --kv-cache-dtype bfloat16 2>/dev/null | tail -n 1)")
done
b_batch=$("$BIN" generate --model "$M" --tokens "$seq1" --tokens "$prompt" --max-new-tokens 12 --temperature 0 \
  --kv-cache-dtype bfloat16 2>"$TMP/err")
[[ "$(echo "$b_batch" | sed -n 1p)" == "${b_alone[0]}" && "$(echo "$b_batch" | sed -n 2p)" == "${b_alone[1]}" ]] \
  || fail "bf16 KV: batched '$b_batch' vs alone '${b_alone[*]}'"
grep -q "bfloat16 KV cache" "$TMP/err" || fail "bf16 KV not reported: $(cat "$TMP/err")"
set +e
"$BIN" generate --model "$M" --tokens 1,2 --kv-cache-dtype fp8 >"$TMP/out" 2>"$TMP/err"
rc=$?
set -e
[[ $rc == 2 ]] && grep -q "kv-cache-dtype is fp8; expected one of auto, float32, bfloat16" "$TMP/err" \
  || fail "bad --kv-cache-dtype: exit $rc, $(cat "$TMP/err")"

# Errors name the bad request and exit 2.
set +e
"$BIN" generate --model "$M" --tokens 1,2 --tokens 3,4096 --max-new-tokens 2 >"$TMP/out" 2>"$TMP/err"
rc=$?
set -e
[[ $rc == 2 ]] || fail "bad token id: exit $rc, want 2"
grep -q "4096" "$TMP/err" || fail "error does not name the bad id: $(cat "$TMP/err")"
echo "generate_test: OK"
