"""Shared by lora_oracle.py and lora_grad_oracle.py: a tiny fixture in float32 with eager attention (as the
fixtures' oracle runs it) wrapped in a random PEFT LoRA on q/k/v/o (init_lora_weights=False, so B is not
zero; B scaled to a tenth to keep the adapter's effect moderate)."""
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def random_lora_model(model_dir, r, alpha):
    torch.manual_seed(0)
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    except TypeError:  # transformers before `dtype`
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                     attn_implementation="eager")
    model = model.float().eval()
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(0.1)
    return peft_model.eval()
