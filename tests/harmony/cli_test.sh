#!/usr/bin/env bash
# `gptoss harmony render|parse` against shared/data/harmony/cases.jsonl: every render case byte-exact
# (after stripping trailing whitespace, as upstream compares), token-id cases parsed to the expected
# messages, errors exit 2 with a message.
set -euo pipefail
bin="${GPTOSS_BINARY:?GPTOSS_BINARY is not set}"
shared="${GPTOSS_SHARED_DIR:?GPTOSS_SHARED_DIR is not set}"
export GPTOSS_BINARY GPTOSS_SHARED_DIR
python3 - "$bin" "$shared/data/harmony" <<'PY'
import json, subprocess, sys
binary, hdir = sys.argv[1], sys.argv[2]
ok = bad = 0
def fail(name, msg):
    global bad
    bad += 1
    print(f"FAIL {name}: {msg}")
for line in open(f"{hdir}/cases.jsonl", encoding="utf-8"):
    c = json.loads(line)
    name, kind = c["name"], c["kind"]
    if kind.startswith("render"):
        want = (open(f"{hdir}/expected/{c['expected_file']}", encoding="utf-8").read().rstrip()
                if c.get("expected_file") else c["expected_text"])
        r = subprocess.run([binary, "harmony", "render"], input=line.encode(), capture_output=True)
        got = r.stdout.decode()
        if r.returncode != 0: fail(name, r.stderr.decode()); continue
        if got.rstrip() != want: fail(name, "rendering differs"); continue
        r = subprocess.run([binary, "harmony", "render", "--tokens"], input=line.encode(), capture_output=True)
        ids = r.stdout.decode()
        if r.returncode != 0 or not ids or ids.endswith("\n") or not all(x.isdigit() for x in ids.split(",")):
            fail(name, "--tokens output is not comma-separated ids: " + ids[:80]); continue
        ok += 1
    elif kind == "parse_completion_tokens" and c.get("input_format") == "token_ids" and "expected_messages" in c:
        if c.get("expected_file"):
            ids = open(f"{hdir}/expected/{c['expected_file']}").read().split()
        else:
            ids = [str(i) for s in c["input_segments"] for i in s["ids"]]
        cmd = [binary, "harmony", "parse", "--tokens", ",".join(ids)]
        if c["options"].get("role"): cmd += ["--role", c["options"]["role"]]
        r = subprocess.run(cmd, capture_output=True)
        if r.returncode != 0: fail(name, r.stderr.decode()); continue
        if json.loads(r.stdout) != c["expected_messages"]: fail(name, r.stdout.decode()); continue
        ok += 1
r = subprocess.run([binary, "harmony", "parse", "--tokens", "200005,35644", "--role", "assistant"], capture_output=True)
if r.returncode != 2 or b"Unexpected EOS" not in r.stderr: fail("truncated_header", r.stderr.decode())
else: ok += 1
r = subprocess.run([binary, "harmony", "parse", "--tokens", "200005,35644", "--role", "assistant", "--non-strict"], capture_output=True)
if r.returncode != 0 or json.loads(r.stdout) != [{"role": "assistant", "channel": "analysis", "content": ""}]:
    fail("truncated_header_non_strict", r.stdout.decode() + r.stderr.decode())
else: ok += 1
r = subprocess.run([binary, "harmony", "render"], input=b'{"messages": [{"role": "robot"}]}', capture_output=True)
if r.returncode != 2 or b"messages[0].role" not in r.stderr: fail("bad_role", r.stderr.decode())
else: ok += 1
print(f"{ok} passed, {bad} failed")
sys.exit(1 if bad or ok < 20 else 0)
PY
