#!/usr/bin/env bash
# Runs on the GPU machine (see scripts/device_bundle.sh): one `gptoss bench` command under several
# environment settings, alternated for $ROUNDS rounds (default 2) so the settings see the same minutes, on
# the 20b-shape random checkpoint (made once in /tmp/r20b; MODEL=DIR for another). One line a run: the
# setting and its rows (test, batch, tok/s), also in $OUT/env_ab.txt. For A/B runs of temporary switches.
#   scripts/device/env_ab.sh "GPTOSS_X=1" "GPTOSS_X=2" -- --prompt 512 --no-decode
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
settings=()
while [[ $# -gt 0 && "$1" != -- ]]; do settings+=("$1"); shift; done
[[ "${1:-}" == -- ]] && shift
MODEL=${MODEL:-/tmp/r20b}
[[ -d "$MODEL" ]] || .device/run gptoss make-random --shape 20b --output "$MODEL" --seed 1 2>&1 | tail -1
for round in $(seq "${ROUNDS:-2}"); do
  for setting in "${settings[@]}"; do
    json=$(env $setting .device/run gptoss bench --model "$MODEL" --device cuda --json "$@" 2>/dev/null)
    rows=$(python3 -c '
import json, sys
r = json.loads(sys.stdin.read())["results"]
print("  ".join("%s b%d p%d %.1f" % (x["phase"], x["batch"], x["prompt_tokens"], x["tok_s"]) for x in r))' <<<"$json" 2>&1)
    echo "round $round  $setting  $rows" | tee -a "$OUT/env_ab.txt"
  done
done
