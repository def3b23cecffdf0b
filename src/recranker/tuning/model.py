"""Loading the LLM to tune (any causal LM: the default, a folder, a GGUF file or a Hugging Face
id) and wrapping it for LoRA or full fine-tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from recranker import assets
from recranker.tuning.config import LoraConfig, TuningConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


#: CPU flags of native bfloat16 matrix products
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux: the first `flags` line of /proc/cpuinfo); empty where they
    cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: str = "cpu", cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether `device` computes bfloat16 matrix products natively: a GPU with bf16 support, or a
    CPU with AVX512-BF16 or AMX-BF16 instructions (Linux: read from /proc/cpuinfo). Elsewhere
    bf16 is emulated and slower than float32."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(cpu_flags(cpuinfo) & BF16_FLAGS)


def mixed_precision(cfg: TuningConfig) -> str:
    """`cfg.mixed_precision` with "auto" resolved for this machine's device (`native_bf16`)."""
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    return "bf16" if native_bf16("cuda" if torch.cuda.is_available() else "cpu") else "no"


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


def float32_adapter_sums(model: Any) -> int:
    """Make every LoRA layer of `model` add its update to a float32 copy of the base layer's output.

    Under bf16 autocast the base layer's output is bfloat16 and peft rounds base + update back to
    it: bfloat16 keeps about 3 significant digits, so most of a small update is lost and the loss
    falls more slowly than in float32 (measured: BENCHMARKS.md, tuning). A forward hook casts each
    adapted base layer's output to float32; the matrix products stay in bfloat16. Returns the
    number of layers hooked."""
    from peft.tuners.lora import LoraLayer

    hooked = 0
    for module in model.modules():
        if isinstance(module, LoraLayer) and isinstance(getattr(module, "base_layer", None), torch.nn.Module):
            module.base_layer.register_forward_hook(lambda _module, _args, out: out.float())
            hooked += 1
    return hooked


def prepare_model(model: Any, cfg: TuningConfig) -> Any:
    """The model to train: LoRA-wrapped (with float32 adapter sums under bf16 mixed precision), or
    all weights trainable for full fine-tuning."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if cfg.method == "lora":
        model = with_lora(model, cfg.lora)
        if mixed_precision(cfg) == "bf16":
            float32_adapter_sums(model)
        return model
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
    check_tuned_folder(folder)
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


def check_tuned_folder(folder: Path) -> None:
    """A `RecrankerError` naming `folder` and what it lacks unless it holds a tuned model: a LoRA
    adapter (adapter/adapter_config.json, its weights and base_model.txt) or a fully tuned model
    (model/config.json and its weights)."""
    from recranker.errors import RecrankerError

    def weights(sub: Path, stem: str) -> bool:
        return any((sub / f"{stem}{suffix}").is_file() for suffix in (".safetensors", ".bin")) or any(
            sub.glob(f"{stem}-*.safetensors"))

    adapter, full = folder / "adapter", folder / "model"
    if (adapter / "adapter_config.json").is_file():
        missing = [name for name, ok in (("adapter/adapter_model.safetensors", weights(adapter, "adapter_model")),
                                         ("base_model.txt", (folder / "base_model.txt").is_file())) if not ok]
    elif (full / "config.json").is_file():
        missing = [] if weights(full, "model") else ["model/model.safetensors"]
    else:
        missing = ["adapter/ (LoRA) or model/ (full fine-tuning)"]
    if missing:
        raise RecrankerError(f"{folder}: no tuned model: {', '.join(missing)} missing; "
                             "tune again (`recranker tune`) or copy the whole run folder")


def load_merged(folder: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """`load_tuned` for inference: a LoRA adapter merged into its base, the tokenizer given a pad
    token (its end of sequence) when it has none."""
    tokenizer, model = load_tuned(folder, dtype)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
