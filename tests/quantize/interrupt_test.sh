#!/usr/bin/env bash
# An interrupted `gptoss quantize` leaves nothing that looks finished: after SIGTERM (clean stop) or
# SIGKILL, the output directory either does not exist or the run had already completed it (a kill that
# lands between the final rename and the exit gives a nonzero status and a complete output).
set -u
BIN=${GPTOSS_BINARY:?}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# A bf16 input big enough to take a moment (vocab 201088: ~100 MB of embeddings).
"$BIN" make-random --shape tiny --vocab 201088 --bf16-experts --output "$work/in" > /dev/null 2>&1 || fail "make-random"

check() {  # $1 = signal, $2 = delay
  local out="$work/out-$1-$2"
  "$BIN" quantize --model-id "$work/in" --output-dir "$out" --quantization-method mxfp4 -q > "$work/log" 2>&1 &
  local pid=$!
  sleep "$2"
  kill -"$1" "$pid" 2> /dev/null
  wait "$pid"
  local rc=$?
  if [ -e "$out" ]; then  # then complete: the config, the index and every shard it names
    [ -f "$out/model.safetensors.index.json" ] || fail "$1 after $2 s: rc $rc, $out has no index"
    [ -f "$out/config.json" ] || fail "$1 after $2 s: rc $rc, $out has no config"
    for shard in $(grep -o '"[^"]*\.safetensors"' "$out/model.safetensors.index.json" | tr -d '"' | sort -u); do
      [ -f "$out/$shard" ] || fail "$1 after $2 s: rc $rc, $out lacks $shard"
    done
  else
    [ "$rc" -ne 0 ] || fail "$1 after $2 s: exit 0 but no $out"
  fi
  if [ "$rc" -ne 0 ] && [ "$1" = TERM ]; then
    ls "$work" | grep -q "out-$1-$2.tmp" && fail "TERM: temporary directory left behind"
  fi
  echo "$1 after $2 s: rc $rc, ok"
}
for d in 0.05 0.2 0.5; do
  check TERM "$d"
  check KILL "$d"
done
# A complete run for comparison.
"$BIN" quantize --model-id "$work/in" --output-dir "$work/full" -q > /dev/null 2>&1 || fail "full run"
[ -f "$work/full/model.safetensors.index.json" ] || fail "full run: no index"
# Refused: existing output without --overwrite (exit code 2).
"$BIN" quantize --model-id "$work/in" --output-dir "$work/full" -q > /dev/null 2> "$work/err"
[ $? -eq 2 ] || fail "existing output not refused"
grep -q -- "--overwrite" "$work/err" || fail "refusal does not mention --overwrite"
"$BIN" quantize --model-id "$work/in" --output-dir "$work/x" --quantization-method gguf_q4 > /dev/null 2> "$work/err"
grep -q "supported: mxfp4" "$work/err" || fail "unsupported method message"
echo PASS
