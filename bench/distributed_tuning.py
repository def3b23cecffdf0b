"""Benchmark: data-parallel tuning (accelerate, 2 CPU processes) against one process, same global batch.

Tunes the default model twice on a run's finished prompts, logging every optimizer step:
- variant `dp1`: one process, `tuning.batch_size` 2 x `tuning.grad_accum` 4 = 8 examples per step;
- variant `dp2`: `accelerate launch --config_file configs/accelerate/cpu-2-processes.yaml`,
  2 processes x 2 x 2 = 8 examples per step (gloo; one torch thread per process).
Both see the same examples in the same order per step (Trainer's data loader shards each global batch
over the processes), so their losses should agree step by step up to summation order. Writes the
two curves to bench/tuning_loss_distributed.png and a table of times and per-step losses.

    python bench/distributed_tuning.py --config configs/ml-1m-cpu.yaml [--max-steps N] [--write]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
CLI = ["-m", "recranker.cli.main", "tune"]
ACCELERATE = HERE.parent / "configs" / "accelerate" / "cpu-2-processes.yaml"


def variants(args: argparse.Namespace) -> dict[str, list[str]]:
    """variant -> command line; both at a global batch of 8."""
    common = ["--config", args.config, "--set", "tuning.logging_steps=1", "--set", "tuning.batch_size=2"]
    if args.max_steps:
        common += ["--max-steps", str(args.max_steps)]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE)]
    return {"dp1": [sys.executable, *CLI, *common, "--variant", "dp1", "--set", "tuning.grad_accum=4"],
            "dp2": [*launch, *CLI, *common, "--variant", "dp2", "--set", "tuning.grad_accum=2"]}


def plot(curves: dict[str, list[tuple[int, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from recranker.artifacts import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, points), style in zip(curves.items(), ("-o", "--x")):
        ax.plot(*zip(*points), style, markersize=4, label=name)
    ax.set_xlabel("optimizer step (8 examples)")
    ax.set_ylabel("training loss (SFT + ALRO terms)")
    ax.set_title("tuning: 1 process vs 2 data-parallel processes (accelerate, CPU)")
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_write(path, binary=True) as fh:
        fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    from recranker.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ml-1m-cpu.yaml", help="a study config whose prompts are built")
    parser.add_argument("--max-steps", type=int, help="stop after N optimizer steps (default: one epoch)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    run = Path(load_config(args.config).run_dir)
    results = {}
    for name, command in variants(args).items():
        folder = run / "tune" / name
        shutil.rmtree(folder, ignore_errors=True)  # always retrain: this measures the run
        started = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
        summary = json.loads((folder / "summary.json").read_text())
        results[name] = (wall, summary,
                         [r for r in json.loads((folder / "log.json").read_text()) if "loss" in r])
    curves = {f"{name}: {s['processes']} process{'es' if s['processes'] > 1 else ''}":
              [(r["step"], r["loss"]) for r in log] for name, (_, s, log) in results.items()}
    plot(curves, HERE / "tuning_loss_distributed.png")
    body = report(results, args)
    print(body)
    if args.write:
        steps = f" --max-steps {args.max_steps}" if args.max_steps else ""
        write_section("distributed-tuning", body, f"python bench/distributed_tuning.py --config {args.config}{steps} --write")


def report(results: dict, args: argparse.Namespace) -> str:
    lines = [f"Config `{args.config}` (its built prompts), SmolLM2-135M-Instruct, LoRA, SFT + ALRO losses, "
             "8 examples per optimizer step in both runs; machine otherwise idle.", "",
             "| variant | processes | examples | steps | wall s (with start-up) | train s | tokens/s | peak RSS MiB (rank 0) | train loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, (wall, s, _) in results.items():
        lines.append(f"| {name} | {s['processes']} | {s['examples']} | {s['steps']} | {wall:.0f} | {s['seconds']:.0f} | "
                     f"{s['tokens_per_s']:.0f} | {s['peak_rss_mib']:.0f} | {s['train_loss']:.4f} |")
    (_, _, one), (_, _, two) = results["dp1"], results["dp2"]
    by_step = {r["step"]: r["loss"] for r in two}
    pairs = [(r["step"], r["loss"], by_step[r["step"]]) for r in one if r["step"] in by_step]
    lines += ["", "| step | loss, 1 process | loss, 2 processes | difference |", "|---|---|---|---|"]
    lines += [f"| {step} | {a:.4f} | {b:.4f} | {b - a:+.4f} |" for step, a, b in pairs]
    if pairs:
        diffs = [abs(b - a) for _, a, b in pairs]
        lines += ["", f"Max |difference| over {len(pairs)} steps: {max(diffs):.2e}; mean {sum(diffs) / len(diffs):.2e}. "
                      "tokens/s counts rank 0's tokens only (half the batch in the 2-process run). "
                      "Curves: `bench/tuning_loss_distributed.png`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
