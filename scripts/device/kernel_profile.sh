#!/usr/bin/env bash
# Runs on the GPU machine (see scripts/device_bundle.sh): Nsight Compute over one decode step of the
# 20b-shape random checkpoint at batch B (kernels in stream order, caches and clocks as they are), summed
# by kernel: time, calls, time a call, DRAM read rate, warp instructions a call (the batch-1 kernels are
# issue-bound: this is what to cut), grid, registers, occupancy.
#   scripts/device/kernel_profile.sh B [KERNELS_PER_STEP]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
B=${1:-1}
N=${2:-330}
[[ -d /tmp/r20b ]] || .device/run gptoss make-random --shape 20b --output /tmp/r20b --seed 1 2>&1 | tail -1
GPTOSS_CUDA_GRAPHS=0 ncu --csv --metrics gpu__time_duration.sum,dram__bytes_read.sum,smsp__inst_executed.sum,launch__grid_size,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
  --launch-skip 3000 --launch-count "$N" --cache-control none --clock-control none \
  .device/run gptoss bench --model /tmp/r20b --device cuda --no-prefill --gen 32 --repeats 1 --batch "$B" \
  > "$OUT/ncu_b$B.csv" 2> "$OUT/ncu_err_b$B.txt"
python3 - "$OUT/ncu_b$B.csv" <<'PY'
import collections, csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
ki, mi, vi, ii = (head.index(k) for k in ("Kernel Name", "Metric Name", "Metric Value", "ID"))
per, names = collections.defaultdict(dict), {}
for r in rows:
    per[r[ii]][r[mi]] = r[vi].replace(",", "")
    names[r[ii]] = r[ki][:70]
agg = collections.defaultdict(lambda: [0, 0.0, 0.0, "", "", 0.0])
for i, m in per.items():
    a = agg[names[i]]
    a[0] += 1
    a[1] += float(m.get("gpu__time_duration.sum", 0))
    a[2] += float(m.get("dram__bytes_read.sum", 0))
    a[5] += float(m.get("smsp__inst_executed.sum", 0))
    a[3] = m.get("launch__grid_size", "")
    a[4] = m.get("launch__registers_per_thread", "") + "r " + m.get("sm__warps_active.avg.pct_of_peak_sustained_active", "")[:4] + "% occ"
print(f"total {sum(a[1] for a in agg.values()) / 1e3:.1f} us over {len(per)} kernels")
for n, a in sorted(agg.items(), key=lambda x: -x[1][1]):
    print(f"{a[1] / 1e3:9.1f} us {a[0]:4d}x {a[1] / a[0] / 1e3:7.2f} us/call {a[2] / max(a[1], 1):7.1f} GB/s "
          f"{a[5] / a[0] / 1e6:6.2f} M inst/call grid {a[3]:>7} {a[4]}  {n}")
PY
