#!/usr/bin/env bash
# Runs on the GPU machine (scripts/device_bundle.sh; the tokenizer in .device/tokenizer.json): the 20b
# shape on a GPU with 16 GiB. A torch process holds all device memory but 16 GiB, so every allocation of
# ours beyond that fails as on a 16 GiB card; gpu_memory_utilization is scaled so that the engine's KV
# budget is what 0.9 (or $UTIL) of a 16 GiB card gives. Then: gptoss bench (prefill 2048 tokens, decode
# at batch 1 and 8), and gptoss serve: its KV pool (/metrics), a 3000-token prompt answered, 64 requests at
# once, and the peak GPU memory of our process. Output in $OUT/mem16.txt.
#   [KV=auto|float32|bfloat16] scripts/device/mem16_check.sh [BINARY=gptoss]   (KV: the KV cache type)
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-gptoss}
R=.device/run
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
MODEL=${MODEL:-/tmp/r20b}
UTIL=${UTIL:-0.9}
KV=${KV:-auto}
LIMIT=$((16 << 30))
[[ -d $MODEL ]] || $R gptoss make-random --shape 20b --output $MODEL --seed 1 2>&1 | tail -1
{
python3 - "$LIMIT" > /tmp/ballast.txt 2>&1 <<'PY' &
import sys, time, torch
free, total = torch.cuda.mem_get_info()
keep = free - int(sys.argv[1])
x = torch.empty(keep, dtype=torch.uint8, device="cuda")
print(total, keep, flush=True)
time.sleep(3600)
PY
ballast=$!
for _ in $(seq 60); do [[ -s /tmp/ballast.txt ]] && break; sleep 1; done
read -r total held < /tmp/ballast.txt
echo "$BIN: device $((total >> 20)) MiB, held by the ballast $((held >> 20)) MiB: $(((total - held) >> 20)) MiB left"
util=$(python3 -c "t, l = $total, $LIMIT; print(($UTIL * l + (t - l)) / t)")
echo "== gptoss bench (16 GiB)"
$R $BIN bench --model $MODEL --device cuda --prompt 2048 --gen 32 --repeats 2 --batch 1,8 --kv-cache-dtype $KV 2>&1 | grep -E '^\||error' | head -12
echo "== gptoss serve (16 GiB, gpu_memory_utilization $UTIL of 16 GiB = $util of the device, $KV KV cache)"
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 200 > /tmp/apps.txt &
smi=$!
$R $BIN serve -c gpt-oss-20b --model.model_name $MODEL --model.tokenizer_name $PWD/.device/tokenizer.json \
  --engine_params.device cuda --engine_params.gpu_memory_utilization "$util" --engine_params.kv_cache_dtype $KV --port 8765 > /tmp/serve.txt 2>&1 &
srv=$!
python3 - $srv <<'PY'
import json, os, sys, time, urllib.request
base = "http://127.0.0.1:8765"
for _ in range(240):
    try:
        urllib.request.urlopen(base + "/health", timeout=2); break
    except Exception:
        try:
            alive = open(f"/proc/{sys.argv[1]}/stat").read().split()[2] != "Z"
        except OSError:
            alive = False
        if not alive:
            sys.exit("gptoss serve exited")
        time.sleep(1)
m = urllib.request.urlopen(base + "/metrics").read().decode()
print("\n".join(l for l in m.splitlines() if l.startswith("gptoss_kv_blocks_total")))
model = json.loads(urllib.request.urlopen(base + "/v1/models").read())["data"][0]["id"]
words = " ".join(["river mountain cloud seven"] * 750)  # ~3000 tokens
req = urllib.request.Request(base + "/v1/completions", method="POST", headers={"Content-Type": "application/json"},
                             data=json.dumps({"model": model, "prompt": words, "max_tokens": 16,
                                              "temperature": 0}).encode())
t = time.time()
r = json.loads(urllib.request.urlopen(req, timeout=300).read())
print("3000-token prompt:", r["usage"], f"{time.time() - t:.1f} s")
# 64 requests at once (the engine's max_num_seqs): prompts of ~400 tokens, 64 new tokens each.
from concurrent.futures import ThreadPoolExecutor
def one(i):
    body = {"model": model, "prompt": f"{i} " + " ".join(["alpha beta gamma delta"] * 100), "max_tokens": 64,
            "temperature": 0}
    q = urllib.request.Request(base + "/v1/completions", method="POST", headers={"Content-Type": "application/json"},
                               data=json.dumps(body).encode())
    return json.loads(urllib.request.urlopen(q, timeout=600).read())["usage"]["completion_tokens"]
t = time.time()
with ThreadPoolExecutor(64) as ex:
    done = list(ex.map(one, range(64)))
print(f"64 concurrent requests: {sum(done)} tokens in {time.time() - t:.1f} s, all answered: {len(done) == 64}")
PY
kill $srv; sleep 1; kill $smi
echo "peak GPU memory of gptoss serve (pid, MiB): $(grep -v "^$ballast," /tmp/apps.txt | sort -t, -k2 -n | tail -1)"
head -5 /tmp/serve.txt
kill $ballast
} 2>&1 | tee -a "$OUT/mem16.txt"
