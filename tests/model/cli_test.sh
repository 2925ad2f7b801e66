#!/usr/bin/env bash
# score / generate / bench on the tiny fixture, through the real binary.
# Env: GPTOSS_BINARY, GPTOSS_SHARED_DIR. Reference values are read from the fixture, not hard-coded.
set -euo pipefail
BIN=${GPTOSS_BINARY:?set GPTOSS_BINARY}
FIX=${GPTOSS_SHARED_DIR:?set GPTOSS_SHARED_DIR}/fixtures/gpt-oss-tiny
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Reads an i32 tensor of reference.safetensors as "a,b,c" (python3 without numpy).
ref_ids() {
  python3 - "$FIX/reference.safetensors" "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
s, e = h[sys.argv[2]]['data_offsets']
print(','.join(str(x) for x in struct.unpack('<%di' % ((e - s) // 4), b[8 + n + s:8 + n + e])))
PY
}

for V in mxfp4 bf16; do
  prompt=$(ref_ids "$V.seq0.input_ids")
  greedy=$(ref_ids "$V.greedy.tokens")
  n_prompt=$(echo "$prompt" | tr ',' '\n' | wc -l)
  want=$(echo "$greedy" | cut -d, -f$((n_prompt + 1))-)
  n_new=$(echo "$want" | tr ',' '\n' | wc -l)

  # generate: greedy ids on the last line, identical to the reference.
  got=$("$BIN" generate --model "$FIX/$V" --tokens "$prompt" --max-new-tokens "$n_new" --temperature 0 | tail -n 1)
  [[ "$got" == "$want" ]] || fail "$V generate: got '$got', want '$want'"

  # Sampling is reproducible with a seed and yields the requested count of valid ids.
  s1=$("$BIN" generate --model "$FIX/$V" --tokens "$prompt" --max-new-tokens 5 --temperature 1.0 --seed 7 | tail -n 1)
  s2=$("$BIN" generate --model "$FIX/$V" --tokens "$prompt" --max-new-tokens 5 --temperature 1.0 --seed 7 | tail -n 1)
  [[ "$s1" == "$s2" ]] || fail "$V sampling with a seed is not reproducible: '$s1' vs '$s2'"
  [[ $(echo "$s1" | tr ',' '\n' | wc -l) == 5 ]] || fail "$V sampling: '$s1' is not 5 ids"

  # score: logits [n, vocab] f32 equal to the reference (relative error <= 1e-4).
  seq1=$(ref_ids "$V.seq1.input_ids")
  "$BIN" score --model "$FIX/$V" --tokens "$seq1" --output "$TMP/$V.safetensors" >/dev/null
  python3 - "$TMP/$V.safetensors" "$FIX/reference.safetensors" "$V.seq1.logits" <<'PY' || fail "$V score logits"
import json, math, struct, sys
def read(path, name):
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    t = h[name]
    s, e = t['data_offsets']
    assert t['dtype'] == 'F32', t
    return t['shape'], struct.unpack('<%df' % ((e - s) // 4), b[8 + n + s:8 + n + e])
shape, got = read(sys.argv[1], 'logits')
rshape, want = read(sys.argv[2], sys.argv[3])
assert shape == rshape, (shape, rshape)
num = sum((a - b) ** 2 for a, b in zip(got, want))
den = sum(b * b for b in want)
err = math.sqrt(num / den)
print('score rel err', err)
assert err <= 1e-4, err
PY
done

# Errors: bad token id, missing model, CUDA in a build without it (when that is the case).
if "$BIN" generate --model "$FIX/mxfp4" --tokens 1,999999 --max-new-tokens 1 >"$TMP/out" 2>"$TMP/err"; then
  fail "out-of-vocabulary token accepted"
fi
grep -q "999999" "$TMP/err" || fail "error does not name the bad token: $(cat "$TMP/err")"
if "$BIN" score --model "$TMP/nowhere" --tokens 1 --output "$TMP/x.safetensors" 2>"$TMP/err"; then
  fail "missing model accepted"
fi
[[ ! -e "$TMP/x.safetensors" ]] || fail "score left an output after failing"

# bench --json: the bench/results schema, with tiny counts; --threads sizes the CPU pool (named in the card).
# The short forms are llama-bench's: -p prompt, -n gen, -r repeats, -t threads.
"$BIN" bench --model "$FIX/mxfp4" -p 8 -n 2 -r 2 --batch 1,2 --probe-mb 64 -t 1 --json >"$TMP/bench.json"
python3 - "$TMP/bench.json" <<'PY' || fail "bench --json schema"
import json, sys
j = json.load(open(sys.argv[1]))
for k in ('date', 'commit', 'card', 'command', 'results'):
    assert k in j, k
assert '(1 threads' in j['card'], j['card']
import re  # the commit the binary was built from, baked in at build time
assert re.fullmatch(r'[0-9a-f]{7,}(-dirty)?|unknown', j['commit']), j['commit']
assert j['bandwidth_gb_s'] > 0 and j['fma_peak_gflops'] > 0
# probes before and after the tests; the rooflines use the higher of each
assert len(j['bandwidth_gb_s_probes']) == 2 and len(j['fma_peak_gflops_probes']) == 2
assert abs(j['bandwidth_gb_s'] - max(j['bandwidth_gb_s_probes'])) < 1e-9 * j['bandwidth_gb_s']
assert abs(j['fma_peak_gflops'] - max(j['fma_peak_gflops_probes'])) < 1e-9 * j['fma_peak_gflops']
# On the CPU the decode roofline's bandwidth streams the weights themselves; a fresh buffer is reported too.
assert j['bandwidth_source'] == 'weights', j['bandwidth_source']
assert len(j['buffer_bandwidth_gb_s_probes']) == 2 and min(j['buffer_bandwidth_gb_s_probes']) > 0
assert abs(j['buffer_bandwidth_gb_s'] - max(j['buffer_bandwidth_gb_s_probes'])) < 1e-9 * j['buffer_bandwidth_gb_s']
# The weights probe reads what a decode step may read: attention, router, expert and lm_head weights,
# each trimmed to whole 128-byte strides from a 64-byte boundary (< 192 bytes lost per tensor).
import os, struct
ckpt = os.path.join(os.environ['GPTOSS_SHARED_DIR'], 'fixtures/gpt-oss-tiny/mxfp4/model.safetensors')
with open(ckpt, 'rb') as f:
    hdr = json.loads(f.read(struct.unpack('<Q', f.read(8))[0]))
cfg = json.load(open(os.path.join(os.path.dirname(ckpt), 'config.json')))
ends = ('q_proj.weight', 'k_proj.weight', 'v_proj.weight', 'o_proj.weight', 'router.weight', '_blocks', '_scales')
lm = 'model.embed_tokens.weight' if cfg.get('tie_word_embeddings') else 'lm_head.weight'
read = [v['data_offsets'][1] - v['data_offsets'][0] for k, v in hdr.items()
        if k != '__metadata__' and (k.endswith(ends) or k == lm)]
assert sum(read) - 192 * len(read) < j['bandwidth_probe_bytes'] <= sum(read), (j['bandwidth_probe_bytes'], sum(read))
d1 = [r for r in j['results'] if r['phase'] == 'decode' and r['batch'] == 1][0]
want = j['decode_bytes_per_token'] * d1['tok_s'] / (j['bandwidth_gb_s'] * 1e9)  # against the higher probe
assert abs(d1['roofline_fraction'] - want) <= 1e-9 * want, (d1['roofline_fraction'], want)
phases = [(r['phase'], r['batch']) for r in j['results']]
assert phases == [('prefill', 1), ('decode', 1), ('decode', 2)], phases
for r in j['results']:
    for k in ('model', 'phase', 'batch', 'prompt_tokens', 'tok_s', 'roofline_fraction', 'peak_mem_bytes'):
        assert k in r, k
    assert r['tok_s'] > 0 and r['roofline_fraction'] > 0 and r['peak_mem_bytes'] > 0
assert j['results'][0]['prompt_tokens'] == 8
print('bench json ok')
PY

# bench --depth: decode after a context (more than one 512-token prefill chunk crosses the window too).
"$BIN" bench --model "$FIX/mxfp4" --no-prefill --gen 2 --repeats 1 --batch 1,2 --depth 600 --probe-mb 64 --json \
  >"$TMP/bench_depth.json" || fail "bench --depth"
python3 - "$TMP/bench_depth.json" <<'PY' || fail "bench --depth json"
import json, sys
j = json.load(open(sys.argv[1]))
assert [(r['test'], r['batch'], r['prompt_tokens']) for r in j['results']] == [('tg2@d600', 1, 600), ('tg2@d600', 2, 600)], j['results']
assert all(r['tok_s'] > 0 for r in j['results'])
print('bench depth ok')
PY
"$BIN" bench --model "$FIX/mxfp4" --depth -1 >/dev/null 2>"$TMP/err.txt" && fail "negative --depth accepted"
grep -q -- "--depth is -1" "$TMP/err.txt" || fail "negative --depth message: $(cat "$TMP/err.txt")"
# The CPU kernels' instruction set: avx2 is always there and gives the reference tokens; a bad value is a
# clear error.
prompt=$(ref_ids "mxfp4.seq0.input_ids")
a=$("$BIN" generate --model "$FIX/mxfp4" --tokens "$prompt" --max-new-tokens 6 --temperature 0 | tail -1)
b=$(GPTOSS_CPU_ISA=avx2 "$BIN" generate --model "$FIX/mxfp4" --tokens "$prompt" --max-new-tokens 6 --temperature 0 | tail -1)
[[ "$a" == "$b" ]] || fail "GPTOSS_CPU_ISA=avx2 changed the greedy tokens: $a vs $b"
GPTOSS_CPU_ISA=sse2 "$BIN" generate --model "$FIX/mxfp4" --tokens 1,2 --max-new-tokens 1 >/dev/null 2>"$TMP/err.txt" &&
  fail "GPTOSS_CPU_ISA=sse2 accepted"
grep -q "GPTOSS_CPU_ISA=sse2: expected avx2, avx512, vnni or amx" "$TMP/err.txt" || fail "ISA message: $(cat "$TMP/err.txt")"
echo "cli_test: OK"
