#!/usr/bin/env python3
"""lora_oracle.py MODEL_DIR OUT_DIR: a PEFT LoRA adapter and what transformers + peft compute with it.

Runs on the GPU machine (torch, transformers, peft). Loads MODEL_DIR (a tiny fixture, bf16 experts) in
float32 with eager attention as the fixtures' oracle does, wraps it with a LoRA of rank 8 (alpha 16) on
q_proj, k_proj, v_proj and o_proj whose A and B are both random (init_lora_weights=False: B is not zero),
saves the adapter in PEFT's layout to OUT_DIR/adapter and writes OUT_DIR/reference.safetensors with
`input_ids` (int32) and `logits` (f32 [n, vocab]) of one token sequence. gpu_check.sh then scores the same
ids with `gptoss score --adapter` and compares (relative error <= 1e-4).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peft_random import random_lora_model  # noqa: E402
from safetensors.torch import save_file

model_dir, out = sys.argv[1], sys.argv[2]
peft_model = random_lora_model(model_dir, r=8, alpha=16)
model = peft_model.base_model.model
os.makedirs(out, exist_ok=True)
peft_model.save_pretrained(os.path.join(out, "adapter"), safe_serialization=True)
vocab = model.config.vocab_size
ids = torch.tensor([[(i * 7919 + 11) % vocab for i in range(40)]], dtype=torch.long)
with torch.no_grad():
    logits = peft_model(input_ids=ids).logits[0].float().contiguous()
save_file({"input_ids": ids[0].to(torch.int32).contiguous(), "logits": logits},
          os.path.join(out, "reference.safetensors"))
print("lora_oracle: wrote", out, "adapter tensors:",
      sum(1 for n, _ in peft_model.named_parameters() if "lora_" in n))
