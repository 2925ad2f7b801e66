#!/usr/bin/env python3
"""compare_logits.py REF.safetensors KEY OURS.safetensors LABEL: relative error of `logits` vs REF[KEY]."""
import sys
import numpy as np
from safetensors.numpy import load_file
ref = load_file(sys.argv[1])[sys.argv[2]].astype(np.float64)
ours = load_file(sys.argv[3])["logits"].astype(np.float64)
err = np.linalg.norm(ours - ref) / np.linalg.norm(ref) if ours.shape == ref.shape else float("inf")
print(f"{sys.argv[4]}: rel_err={err:.2e} {'ok' if err <= 1e-4 else 'FAIL'}")
