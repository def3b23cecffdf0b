"""Benchmark: tuning throughput of length-grouped batches against naive fixed-length padding.

Every run trains SmolLM2-135M-Instruct with LoRA (the default settings: batch 2, 4 accumulation
steps, SFT only, so only the batching differs) for one epoch over the same ML-100K instructions
(the first N of each task's JSONL, mixed), each in its own process so its peak memory is its own:

- ours (`tuning.batching: length`): the Trainer's length-grouped sampler, each batch padded on
  the left to its longest row, logits computed at the answer positions only;
- ours, bf16 mixed precision (`tuning.mixed_precision: bf16`): the same, with float32 weights and
  the matrix products in bfloat16 under autocast; its loss at every step beside ours';
- naive (`batching: fixed`): random batches, every row padded to a fixed length (512: the
  smallest power of two above the longest prompt, as a fixed cutoff is usually set), logits at
  every position, as a plain causal-LM loss computes them;
- naive, tightest: the same padded only to the longest example of these instructions, the best a
  fixed length can do (it needs the data's lengths in advance).

Tokens/s counts real prompt and answer tokens (padding excluded), so both runs are credited with
the same work. Peak memory is the process's peak resident set (CPU) or peak allocated (GPU).

Writes the section "tuning" of BENCHMARKS.md (with --write).

    python bench/tuning.py [--run runs/bench-prompts] [--per-task 24] [--write]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

TASKS = ("pointwise", "pairwise", "listwise")
#: name -> (batching, fixed_length, mixed_precision); fixed_length 0: the longest example of the data
MODES = {"ours": ("length", None, "no"), "ours-bf16": ("length", None, "bf16"), "naive-512": ("fixed", 512, "no"),
         "naive-longest": ("fixed", 0, "no")}


def worker(args: argparse.Namespace) -> None:
    """Train one epoch in `args.worker` batching mode; print one JSON line of measurements."""
    import shutil
    import tempfile

    import torch

    from recranker.stages.base import peak_rss_mib
    from recranker.tuning.config import AlroConfig, TuningConfig
    from recranker.tuning.data import encode_file
    from recranker.tuning.model import load_causal_lm, prepare_model
    from recranker.tuning.tune import build_trainer

    torch.set_num_threads(args.threads) if args.threads else None
    tokenizer, model = load_causal_lm(args.model)
    examples = []
    for task in TASKS:
        examples += encode_file(Path(args.run) / "prompts" / f"{task}.jsonl", tokenizer, ranking=False,
                                limit=args.per_task)[0]
    batching, fixed_length, mixed = MODES[args.worker]
    cfg = TuningConfig(batching=batching, fixed_length=fixed_length or None, mixed_precision=mixed, epochs=1,
                       save_steps=10**6, logging_steps=1, alro=AlroConfig(soft_lambda=False, permutation=False))
    torch.manual_seed(cfg.seed)
    model = prepare_model(model, cfg)
    out = Path(tempfile.mkdtemp(prefix="bench-tuning-"))
    trainer = build_trainer(cfg, tokenizer, model, examples, out, progress=False)
    padded = 0
    collate = trainer.data_collator

    def counting(batch):
        nonlocal padded
        result = collate(batch)
        padded += result["input_ids"].numel()
        return result

    trainer.data_collator = counting
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    gpu = torch.cuda.is_available()
    print(json.dumps({
        "mode": args.worker, "examples": len(examples), "steps": trainer.state.global_step, "seconds": seconds,
        "tokens": trainer.total_tokens, "padded_tokens": padded, "tokens_per_s": trainer.total_tokens / seconds,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if gpu else peak_rss_mib(),
        "device": torch.cuda.get_device_name() if gpu else "cpu", "loss": trainer.state.log_history[-1].get("train_loss"),
        "step_losses": [row["loss"] for row in trainer.state.log_history if "loss" in row],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-prompts", help="run directory with prompts/<task>.jsonl")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--per-task", type=int, default=24, help="instructions per task (first N)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results = []
    for mode in MODES:
        command = [sys.executable, __file__, "--worker", mode, "--run", args.run, "--model", args.model,
                   "--per-task", str(args.per_task), "--threads", str(args.threads)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    body = report(results, args)
    print(body)
    if args.write:
        command = f"python bench/tuning.py --run {args.run} --per-task {args.per_task} --write"
        write_section("tuning", body, command)


def report(results: list[dict], args: argparse.Namespace) -> str:
    from recranker.tuning.config import TuningConfig

    by_mode = {r["mode"]: r for r in results}
    ours, half, naive = by_mode["ours"], by_mode["ours-bf16"], by_mode["naive-512"]
    lines = [
        f"SmolLM2-135M-Instruct, LoRA (r 8, all linear layers), float32 weights, SFT only, batch {TuningConfig().batch_size} "
        f"x {TuningConfig().grad_accum} accumulation steps, one epoch over the same {ours['examples']} ML-100K instructions ({args.per_task} per task, "
        f"mixed); device: {ours['device']}. Tokens/s counts real prompt + answer tokens (no padding).",
        "",
        "| batching | steps | seconds | real tokens | padded tokens | padding share | tokens/s | peak memory MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"ours": "ours: length-grouped, per-batch padding, answer logits only",
             "ours-bf16": "ours + bf16 mixed precision (autocast)",
             "naive-512": "naive: random, fixed length 512, all logits",
             "naive-longest": "naive, tightest: random, padded to the longest example, all logits"}
    for r in results:
        share = 1 - r["tokens"] / r["padded_tokens"]
        lines.append(f"| {names[r['mode']]} | {r['steps']} | {r['seconds']:.1f} | {r['tokens']:,} | "
                     f"{r['padded_tokens']:,} | {share:.1%} | {r['tokens_per_s']:.0f} | {r['peak_mib']:.0f} |")
    lines += ["", f"Speed-up of ours over naive (512): **{ours['tokens_per_s'] / naive['tokens_per_s']:.2f}x** tokens/s; "
              f"over the tightest fixed length: **{ours['tokens_per_s'] / by_mode['naive-longest']['tokens_per_s']:.2f}x**.",
              "", f"bf16 mixed precision over ours (float32): **{half['tokens_per_s'] / ours['tokens_per_s']:.2f}x** "
              f"tokens/s. Loss per step, float32 / bf16: " + ", ".join(
                  f"{a:.3f} / {b:.3f}" for a, b in zip(ours["step_losses"], half["step_losses"])) +
              f"; largest difference {max(abs(a - b) for a, b in zip(ours['step_losses'], half['step_losses'])):.3f}, "
              f"final training loss {ours['loss']:.4f} / {half['loss']:.4f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
