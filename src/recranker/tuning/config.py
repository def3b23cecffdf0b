"""Settings of instruction tuning (the `tuning` section of a study config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from recranker.prompts.templates import Task
from recranker.settings import Settings


class LoraConfig(Settings):
    """LoRA adapter shape (peft)."""

    rank: int = Field(8, ge=1, description="r")
    alpha: float = Field(16.0, gt=0, description="scaling numerator: the update is (alpha / r) B A")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input (each adapted "
                           "layer keeps its own dropped copy for backward: memory)")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt, or every linear layer but the output head")


class AlroConfig(Settings):
    """ALRO's objective L = L_sft + alpha L_rank + beta L_perm on listwise examples; each term
    can be switched off for ablation (paper defaults alpha 0.1, beta 0.01, gamma 2)."""

    soft_lambda: bool = Field(True, description="add the soft lambda loss")
    permutation: bool = Field(True, description="add the permutation-sensitive loss (a second, shuffled view)")
    alpha: float = Field(0.1, ge=0, description="weight of the soft lambda loss")
    beta: float = Field(0.01, ge=0, description="weight of the permutation-sensitive loss")
    gamma: float = Field(2.0, gt=0, description="temperature of the soft position")
    sigma: float = Field(1.0, gt=0, description="steepness of the pairwise logistic in the lambda loss")

    @property
    def active(self) -> bool:
        """Whether any ranking term is on."""
        return self.soft_lambda or self.permutation


class TuningConfig(Settings):
    """Which model to tune, on which instruction data, how."""

    variant: str = Field("main", pattern=r"^[A-Za-z0-9._-]+$",
                         description="name of this tuning under tune/ (several variants can share a run)")
    model: str = Field("smollm2-135m", description="smollm2-135m, a model folder, a .gguf file or a Hugging Face id")
    tasks: list[Task] | None = Field(None, description="instruction files to mix (default: every task built)")
    limit: int | None = Field(None, ge=1, description="use only the first N records of each task file (not to be "
                              "confused with sampling.instructions, the number of records built)")
    method: Literal["lora", "full"] = "lora"
    lora: LoraConfig = Field(default_factory=LoraConfig)
    alro: AlroConfig = Field(default_factory=AlroConfig)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(2, ge=1, description="examples per forward pass (memory grows with it; with the "
                            "permutation loss a listwise example brings a second row)")
    grad_accum: int = Field(4, ge=1, description="gradient accumulation steps (examples per update: batch_size x grad_accum)")
    learning_rate: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    max_length: int = Field(1024, ge=16, description="longer conversations are dropped (and counted)")
    batching: Literal["length", "fixed"] = Field(
        "length", description="length: length-grouped batches padded to their longest row, logits of the "
        "answer positions only; fixed: the naive baseline, random batches padded to fixed_length and "
        "logits of every position")
    fixed_length: int | None = Field(None, ge=16, description="fixed batching: pad every row to this "
                                     "(default: the longest example of the data)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="the weights' dtype while training (keep float32 and use mixed_precision for speed)")
    mixed_precision: Literal["auto", "no", "bf16"] = Field(
        "auto", description="bf16: float32 weights, matrix products in bfloat16 under autocast (CPU or GPU), "
        "adapter sums in float32; auto: bf16 where the device computes bfloat16 natively (AVX512-BF16 or AMX "
        "CPUs, recent GPUs), else no (BENCHMARKS.md, tuning)")
    gradient_checkpointing: bool = False
    save_steps: int = Field(50, ge=1, description="checkpoint every N steps (an interrupted run resumes)")
    logging_steps: int = Field(5, ge=1)
    seed: int = 0
    merge: bool = Field(False, description="also export the model with the adapter merged in")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "instructions" in data:
            raise ValueError("instructions was renamed limit (the first N records of each task file; "
                             "sampling.instructions is how many are built)")
        return data

    @model_validator(mode="after")
    def _checks(self) -> "TuningConfig":
        if self.tasks is not None and not self.tasks:
            raise ValueError("tasks: give at least one task")
        if self.tasks is not None and len(set(self.tasks)) != len(self.tasks):
            raise ValueError("tasks: a task is listed twice")
        if self.method == "full" and self.merge:
            raise ValueError("merge: only a LoRA adapter can be merged; full fine-tuning saves the model")
        return self
