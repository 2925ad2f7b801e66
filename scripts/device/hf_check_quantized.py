#!/usr/bin/env python3
"""Loads a gptoss-quantized MXFP4 checkpoint in Hugging Face transformers (Mxfp4Config(dequantize=True))
and compares its logits with the logits gptoss computed (`gptoss score` output, a safetensors file).

  hf_check_quantized.py MODEL_DIR OURS.safetensors TOKENS(comma-separated) [BF16_DIR]

With BF16_DIR (the unquantized checkpoint) it also prints the relative RMS error of the expert weights
as transformers dequantized them against the bf16 originals: the weight-level check, free of the chaotic
amplification a random tiny model applies to logits.

Prints the relative error ||ours - hf|| / ||hf|| and exits 1 if it exceeds 1e-3 (transformers dequantizes
the experts to bf16 and runs bf16 matmuls on GPU, so agreement is at bf16 level, not f32)."""
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Mxfp4Config

DEVICE = os.environ.get("HF_DEVICE", "cuda")
model_dir, ours_path, tokens = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3].split(",")]
model = AutoModelForCausalLM.from_pretrained(
    model_dir, quantization_config=Mxfp4Config(dequantize=True), torch_dtype=torch.float32,
    attn_implementation="eager").to(DEVICE).eval()
with torch.no_grad():
    hf = model(torch.tensor([tokens], device=DEVICE)).logits[0].float().cpu()
ours = load_file(ours_path)["logits"].float()
err = ((ours - hf).norm() / hf.norm()).item()
same_argmax = (ours.argmax(-1) == hf.argmax(-1)).float().mean().item()
print(f"hf_check_quantized: tokens={len(tokens)} rel_err={err:.3e} argmax_agreement={same_argmax:.3f}")
if len(sys.argv) > 4:
    ref = load_file(sys.argv[4] + "/model.safetensors")
    num = den = 0.0
    for i, layer in enumerate(model.model.layers):
        for name in ("gate_up_proj", "down_proj"):
            w = getattr(layer.mlp.experts, name).detach().float().cpu()
            r = ref[f"model.layers.{i}.mlp.experts.{name}"].float()
            num += ((w - r) ** 2).sum().item()
            den += (r ** 2).sum().item()
    print(f"hf_check_quantized: expert weights as transformers dequantized them: rel RMS error vs bf16 = {(num / den) ** 0.5:.5f}")
sys.exit(0 if err <= 1e-3 else 1)
