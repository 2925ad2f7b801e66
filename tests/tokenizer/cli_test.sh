#!/usr/bin/env bash
# CLI tests for `gptoss tokenize` / `gptoss detokenize`.
# Env: GPTOSS_BINARY (the gptoss binary), GPTOSS_SHARED_DIR (shared/ with data/tokenizer/tokenizer.json).
set -uo pipefail
bin="${GPTOSS_BINARY:?set GPTOSS_BINARY}"
tokjson="${GPTOSS_SHARED_DIR:?set GPTOSS_SHARED_DIR}/data/tokenizer/tokenizer.json"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0
check() {  # check NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  expected: %q\n  actual:   %q\n' "$1" "$2" "$3"
  fi
}
contains() {  # contains NAME NEEDLE HAYSTACK
  if [[ "$3" == *"$2"* ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n  expected to contain: %q\n  actual: %q\n' "$1" "$2" "$3"
  fi
}

# Ordinary text: special-token text is plain text; --allow-special recognises it.
check "tokenize" "24912,464,91,5236,91,29,2375" "$("$bin" tokenize --tokenizer "$tokjson" "hello <|start|> world")"
check "tokenize --allow-special" "24912,220,200006,2375" \
  "$("$bin" tokenize --tokenizer "$tokjson" --allow-special "hello <|start|> world")"
check "detokenize" "hello <|start|> world" "$("$bin" detokenize --tokenizer "$tokjson" 24912,220,200006,2375)"
check "empty text" "" "$("$bin" tokenize --tokenizer "$tokjson" "")"

# --model DIR reads DIR/tokenizer.json; a directory without one is a clear error naming the file.
mkdir -p "$tmp/model"
ln -s "$tokjson" "$tmp/model/tokenizer.json"
check "--model" "3086,4853,19705,68347" "$("$bin" tokenize --model "$tmp/model" "the quick brown fox")"
mkdir -p "$tmp/empty"
err=$("$bin" tokenize --model "$tmp/empty" "x" 2>&1 >/dev/null); rc=$?
check "--model without tokenizer.json: exit code" "2" "$rc"
contains "--model without tokenizer.json: message" "$tmp/empty/tokenizer.json" "$err"

# --file, and invalid UTF-8 named by byte offset (never a crash).
printf 'caf\xc3\xa9 \xe2\x82\xac5' > "$tmp/good.txt"
check "--file" "$("$bin" tokenize --tokenizer "$tokjson" "café €5")" "$("$bin" tokenize --tokenizer "$tokjson" --file "$tmp/good.txt")"
printf 'abc\xe2\x82xyz' > "$tmp/bad.txt"
err=$("$bin" tokenize --tokenizer "$tokjson" --file "$tmp/bad.txt" 2>&1 >/dev/null); rc=$?
check "invalid UTF-8: exit code" "2" "$rc"
contains "invalid UTF-8: offset" "invalid UTF-8 at byte offset 3" "$err"
contains "invalid UTF-8: file named" "$tmp/bad.txt" "$err"
err=$("$bin" tokenize --tokenizer "$tokjson" "$(printf 'ok\xc0\xaf')" 2>&1 >/dev/null); rc=$?
check "overlong UTF-8 argument: exit code" "2" "$rc"
contains "overlong UTF-8 argument: offset" "byte offset 2" "$err"

# --jsonl: same order, lines split on \n only (U+2028 inside a text is not a line break).
printf '{"text":"a"}\n{"text":"b\xe2\x80\xa8c"}\n{"text":"<|end|>"}\n' > "$tmp/in.jsonl"
check "--jsonl" $'{"ids":[64]}\n{"ids":[65,51008,66]}\n{"ids":[27,91,419,91,29]}' \
  "$("$bin" tokenize --tokenizer "$tokjson" --jsonl < "$tmp/in.jsonl")"
check "--jsonl --allow-special" $'{"ids":[64]}\n{"ids":[65,51008,66]}\n{"ids":[200007]}' \
  "$("$bin" tokenize --tokenizer "$tokjson" --jsonl --allow-special < "$tmp/in.jsonl")"
printf '{"text":"a"}\n{"text":"b\xff"}\n' > "$tmp/bad.jsonl"
err=$("$bin" tokenize --tokenizer "$tokjson" --jsonl < "$tmp/bad.jsonl" 2>&1 >/dev/null); rc=$?
check "--jsonl invalid UTF-8: exit code" "2" "$rc"
contains "--jsonl invalid UTF-8: line and offset" "stdin line 2: invalid UTF-8 at byte offset 10" "$err"
printf '{"ids":[64]}\n{"ids":[65,51008,66]}\n{"ids":[200007, 24912]}\n' > "$tmp/ids.jsonl"
check "detokenize --jsonl" $'{"text":"a"}\n{"text":"b\xe2\x80\xa8c"}\n{"text":"<|end|>hello"}' \
  "$("$bin" detokenize --tokenizer "$tokjson" --jsonl < "$tmp/ids.jsonl")"

# Round trip through both commands on the shared vectors' texts.
vectors="${GPTOSS_SHARED_DIR}/data/tokenizer/vectors.jsonl"
"$bin" tokenize --tokenizer "$tokjson" --jsonl --allow-special < "$vectors" > "$tmp/ids_out.jsonl"
check "round trip line count" "$(grep -c '' "$vectors")" "$(grep -c '' "$tmp/ids_out.jsonl")"
"$bin" detokenize --tokenizer "$tokjson" --jsonl < "$tmp/ids_out.jsonl" > "$tmp/text_out.jsonl"
python3 - "$vectors" "$tmp/ids_out.jsonl" "$tmp/text_out.jsonl" > "$tmp/roundtrip.txt" <<'PY'
import json, sys
ref = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8").read().split("\n") if l]
ids = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8").read().split("\n") if l]
txt = [json.loads(l) for l in open(sys.argv[3], encoding="utf-8").read().split("\n") if l]
ok = len(ref) == len(ids) == len(txt) and all(
    r["ids_special"] == i["ids"] and r["text"] == t["text"] for r, i, t in zip(ref, ids, txt))
print("ok" if ok else "mismatch")
PY
check "vectors through the CLI" "ok" "$(cat "$tmp/roundtrip.txt")"

# Errors: bad ids, both/no inputs.
err=$("$bin" detokenize --tokenizer "$tokjson" 1,x,3 2>&1 >/dev/null); rc=$?
check "detokenize bad id: exit code" "2" "$rc"
contains "detokenize bad id: message" "'x' is not a token id" "$err"
err=$("$bin" detokenize --tokenizer "$tokjson" 201088 2>&1 >/dev/null); rc=$?
check "detokenize out of range: exit code" "2" "$rc"
contains "detokenize out of range: message" "201088" "$err"
err=$("$bin" tokenize --tokenizer "$tokjson" 2>&1 >/dev/null); rc=$?
check "no input: exit code" "2" "$rc"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
