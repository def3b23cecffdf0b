"""Loading the LLM to tune (any causal LM: the default, a folder, a GGUF file or a Hugging Face
id) and wrapping it for LoRA or full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from recranker import assets
from recranker.tuning.config import LoraConfig, TuningConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_causal_lm(spec: str, dtype: str = "float32") -> tuple[Any, Any]:
    """(tokenizer, model) of `spec`: "smollm2-135m" (the fetched default), a model folder, a path
    to a .gguf file (de-quantized by transformers) or a Hugging Face id. The tokenizer gets a pad
    token (its end-of-sequence token) when it has none. FetchError when nothing loads."""
    from transformers import AutoModelForCausalLM

    tokenizer = assets.load_tokenizer(spec)
    model = assets.load_pretrained(AutoModelForCausalLM, spec, "a causal LM", dtype=DTYPES[dtype])
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def with_lora(model: Any, settings: LoraConfig) -> Any:
    """`model` wrapped by peft with a fresh LoRA adapter (base weights frozen)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = PeftLoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                            target_modules=settings.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def prepare_model(model: Any, cfg: TuningConfig) -> Any:
    """The model to train: LoRA-wrapped, or all weights trainable for full fine-tuning."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if cfg.method == "lora":
        return with_lora(model, cfg.lora)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def parameter_counts(model: Any) -> dict[str, int]:
    """Trainable and total parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in model.parameters())}


def load_tuned(folder: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """(tokenizer, model) of a finished tune stage's folder: the base model with the adapter
    applied (LoRA) or the saved model (full fine-tuning), in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if (folder / "adapter" / "adapter_config.json").exists():
        from peft import PeftModel

        base = (folder / "base_model.txt").read_text(encoding="utf-8").strip()
        _, model = load_causal_lm(base, dtype)
        model = PeftModel.from_pretrained(model, folder / "adapter")
        tokenizer = AutoTokenizer.from_pretrained(folder / "adapter")
    else:
        model = AutoModelForCausalLM.from_pretrained(folder / "model", dtype=DTYPES[dtype])
        tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    return tokenizer, model.eval()
