"""Benchmark: tuning throughput of length-grouped batches against naive fixed-length padding.

Both runs train SmolLM2-135M-Instruct with LoRA (the default settings, SFT only, so only the
batching differs) for one epoch over the same ML-100K instructions (the first N of each task's
JSONL, mixed), each in its own process so its peak memory is its own:

- length (ours): the Trainer's length-grouped sampler, each batch padded to its longest row;
- fixed (naive): random batches, every row padded to the longest example of the data.

Tokens/s counts real prompt and answer tokens (padding excluded), so both runs are credited with
the same work. Peak memory is the process's peak resident set (CPU) or peak allocated (GPU).

Writes the section "tuning" of BENCHMARKS.md (with --write).

    python bench/tuning.py [--run runs/bench-prompts] [--per-task 32] [--batch-size 8] [--write]
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
MODES = ("length", "fixed")


def worker(args: argparse.Namespace) -> None:
    """Train one epoch in `args.worker` batching mode; print one JSON line of measurements."""
    import shutil
    import tempfile

    import torch

    from recranker.study import peak_rss_mib
    from recranker.tuning.config import AlroConfig, TuningConfig
    from recranker.tuning.data import encode_file
    from recranker.tuning.model import load_causal_lm
    from recranker.tuning.tune import build_trainer
    from recranker.tuning.model import prepare_model

    torch.set_num_threads(args.threads) if args.threads else None
    tokenizer, model = load_causal_lm(args.model)
    examples = []
    for task in TASKS:
        examples += encode_file(Path(args.run) / "prompts" / f"{task}.jsonl", tokenizer, ranking=False,
                                limit=args.per_task)[0]
    cfg = TuningConfig(batching=args.worker, batch_size=args.batch_size, epochs=1, save_steps=10**6,
                       logging_steps=10**6, alro=AlroConfig(soft_lambda=False, permutation=False))
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
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench-prompts", help="run directory with prompts/<task>.jsonl")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--per-task", type=int, default=32, help="instructions per task (first N)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--write", action="store_true", help="write the section of BENCHMARKS.md")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results = []
    for mode in MODES:
        command = [sys.executable, __file__, "--worker", mode, "--run", args.run, "--model", args.model,
                   "--per-task", str(args.per_task), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    body = report(results, args)
    print(body)
    if args.write:
        command = f"python bench/tuning.py --run {args.run} --per-task {args.per_task} --batch-size {args.batch_size} --write"
        write_section("tuning", body, command)


def report(results: list[dict], args: argparse.Namespace) -> str:
    ours, naive = results
    lines = [
        f"SmolLM2-135M-Instruct, LoRA (r 8, all linear layers), float32, SFT only, batch {args.batch_size}, "
        f"one epoch over the same {ours['examples']} ML-100K instructions ({args.per_task} per task, mixed); "
        f"device: {ours['device']}.",
        "",
        "| batching | steps | seconds | real tokens | padded tokens | padding share | tokens/s | peak memory MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"length": "length-grouped, padded per batch (ours)", "fixed": "random, fixed length (naive)"}
    for r in results:
        share = 1 - r["tokens"] / r["padded_tokens"]
        lines.append(f"| {names[r['mode']]} | {r['steps']} | {r['seconds']:.1f} | {r['tokens']:,} | "
                     f"{r['padded_tokens']:,} | {share:.1%} | {r['tokens_per_s']:.0f} | {r['peak_mib']:.0f} |")
    lines += ["", f"Speed-up of ours over naive: **{ours['tokens_per_s'] / naive['tokens_per_s']:.2f}x** tokens/s."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
