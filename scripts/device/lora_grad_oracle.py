#!/usr/bin/env python3
"""lora_grad_oracle.py MODEL_DIR REFERENCE OUT_DIR: LoRA gradients of one training sequence from transformers + peft.

Runs on the GPU machine (torch, transformers, peft), on the CPU in float32. Loads MODEL_DIR (the bf16 tiny
fixture) with eager attention, wraps it in a LoRA of rank 2 (alpha 4) on q_proj, k_proj, v_proj and o_proj
whose A and B are both random (init_lora_weights=False; B scaled to a tenth), and computes the mean
cross-entropy of the fixture's sequence `bf16.seq2.input_ids` (from REFERENCE) on positions 5.. (the
tokens before are context only) and its gradients. Writes OUT_DIR/adapter (PEFT layout, f32) and
OUT_DIR/oracle.safetensors: input_ids and labels (int32; labels[i] = the token after position i, or -100:
gptoss's convention, shifted as transformers shifts internally), loss (f32 [1]) and grad.<tensor name> for
every lora_A / lora_B. tests/train/backward_test.cpp compares gptoss's gradients with these.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peft_random import random_lora_model  # noqa: E402
from safetensors.torch import load_file, save_file

model_dir, reference, out = sys.argv[1], sys.argv[2], sys.argv[3]
peft_model = random_lora_model(model_dir, r=2, alpha=4)
ids = load_file(reference)["bf16.seq2.input_ids"].to(torch.long)
n = ids.numel()
first = 5
hf_labels = ids.clone()
hf_labels[:first] = -100
loss = peft_model(input_ids=ids[None], labels=hf_labels[None]).loss
loss.backward()
ours = torch.full((n,), -100, dtype=torch.int32)
ours[first - 1:n - 1] = ids[first:].to(torch.int32)
tensors = {"input_ids": ids.to(torch.int32).contiguous(), "labels": ours.contiguous(),
           "loss": loss.detach().reshape(1).float()}
for name, p in peft_model.named_parameters():
    if "lora_" in name:
        key = name.replace(".default", "")
        tensors["grad." + key] = p.grad.detach().float().contiguous()
os.makedirs(out, exist_ok=True)
peft_model.save_pretrained(os.path.join(out, "adapter"), safe_serialization=True)
save_file(tensors, os.path.join(out, "oracle.safetensors"))
print("lora_grad_oracle: loss %.6f, %d gradient tensors, wrote %s" % (loss.item(), len(tensors) - 3, out))
