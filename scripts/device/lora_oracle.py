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
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

model_dir, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
try:
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
except TypeError:
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, attn_implementation="eager")
model = model.float().eval()
cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
peft_model = get_peft_model(model, cfg)
with torch.no_grad():  # keep the adapter's effect moderate: B scaled to a tenth of its random init
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            p.mul_(0.1)
peft_model.eval()
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
