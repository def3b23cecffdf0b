"""One tuning run from encoded examples to saved artefacts (the `tune` stage's work).

    <folder>/checkpoints/   Trainer checkpoints while training (removed once the run is saved)
    <folder>/adapter/       the LoRA adapter and tokenizer (full fine-tuning: model/)
    <folder>/merged/        base model with the adapter merged in (on request)
    <folder>/base_model.txt the model spec the adapter belongs to
    <folder>/log.json       the Trainer's log lines (loss terms, tokens/s, learning rate)
    <folder>/loss_curve.png the loss per logged step
    <folder>/summary.json   sizes, time, tokens/s, peak memory
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from recranker.artifacts import atomic_dir, atomic_write, write_json
from recranker.report import plot_loss_curve
from recranker.tuning.config import TuningConfig
from recranker.tuning.data import Collator
from recranker.tuning.model import mixed_precision, parameter_counts, prepare_model
from recranker.tuning.trainer import ProgressBar, RankerTrainer

log = logging.getLogger(__name__)


def training_arguments(cfg: TuningConfig, output_dir: Path) -> Any:
    """The `TrainingArguments` of `cfg` (checkpoints in `output_dir`)."""
    from transformers import TrainingArguments

    on_gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        train_sampling_strategy="group_by_length" if cfg.batching == "length" else "random",
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # every trainable weight (LoRA or full) is in every forward pass
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,
        bf16=mixed_precision(cfg) == "bf16" or (on_gpu and cfg.dtype == "bfloat16"),
        use_cpu=not on_gpu,
        fp16=on_gpu and cfg.dtype == "float16",
    )


def collator_for(cfg: TuningConfig, tokenizer: Any, examples: list[dict[str, Any]]) -> Collator:
    """The batch collator of `cfg` (fixed batching: every row padded to `fixed_length` or the
    longest example of the data, logits of every position)."""
    if cfg.batching == "length":
        return Collator(tokenizer.pad_token_id, ranking=cfg.alro.active, views=cfg.alro.permutation)
    longest = max(max(len(e["input_ids"]), len(e.get("view", {}).get("input_ids", []))) for e in examples)
    return Collator(tokenizer.pad_token_id, ranking=cfg.alro.active, views=cfg.alro.permutation,
                    pad_to=cfg.fixed_length or longest, all_logits=True)


def build_trainer(cfg: TuningConfig, tokenizer: Any, model: Any, examples: list[dict[str, Any]],
                  output_dir: Path, *, progress: bool = True) -> RankerTrainer:
    """A `RankerTrainer` over `examples` for `model` (already prepared with `prepare_model`)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    if not examples:
        raise ValueError("no training examples")
    trainer = RankerTrainer(model=model, args=training_arguments(cfg, output_dir),
                            train_dataset=examples, data_collator=collator_for(cfg, tokenizer, examples),
                            processing_class=tokenizer, alro=cfg.alro)
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # log lines go to log.json and the progress bar
    trainer.add_callback(ProgressBar(trainer, enabled=progress))
    return trainer


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest `checkpoint-<step>` folder in `output_dir`, if any."""
    found = [p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def tune(cfg: TuningConfig, tokenizer: Any, model: Any, examples: list[dict[str, Any]], folder: Path, *,
         base_model: str, progress: bool = True) -> dict[str, Any]:
    """Train on `examples` and save the artefacts into `folder` (see the module docstring); a
    checkpoint left in `folder/checkpoints` by an interrupted run with the same inputs is resumed.
    Returns the summary."""
    torch.manual_seed(cfg.seed)  # the LoRA initialisation
    model = prepare_model(model, cfg)
    checkpoints = folder / "checkpoints"
    trainer = build_trainer(cfg, tokenizer, model, examples, checkpoints, progress=progress)
    resume = latest_checkpoint(checkpoints)
    if resume is not None:
        log.info("tune: resuming from %s", resume)
    started = time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode(False), torch.enable_grad():  # whatever the caller's grad mode
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    history = trainer.state.log_history
    main = trainer.is_world_process_zero()  # in a distributed run (accelerate launch) only rank 0 saves
    if main:
        save_model(trainer.model, tokenizer, folder, cfg, base_model)
        write_json(folder / "log.json", history)
        plot_loss_curve(history, folder / "loss_curve.png", title=f"tune: {base_model}, {len(examples)} examples")
    summary = {
        "examples": len(examples),
        "steps": trainer.state.global_step,
        "processes": trainer.args.world_size,
        "seconds": seconds,
        "resumed_from": None if resume is None else resume.name,
        "tokens": trainer.total_tokens,  # this process's (each rank trains on its share of every batch)
        "tokens_per_s": trainer.total_tokens / seconds if seconds else 0.0,
        "train_loss": result.training_loss,
        "mixed_precision": mixed_precision(cfg),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
        **parameter_counts(trainer.model),
    }
    if main:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return summary


def save_model(model: Any, tokenizer: Any, folder: Path, cfg: TuningConfig, base_model: str) -> None:
    """Save the adapter (or the full model), the base model's spec and, on request, the merged model."""
    name = "adapter" if cfg.method == "lora" else "model"
    with atomic_dir(folder / name) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    with atomic_write(folder / "base_model.txt") as fh:
        fh.write(base_model + "\n")
    if cfg.merge:
        with atomic_dir(folder / "merged") as tmp:
            model.merge_and_unload().save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
