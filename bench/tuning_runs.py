"""Benchmark: real tuning runs on ML-100K with the default model, with and without ALRO's losses.

Runs `recranker tune` twice (a finished variant is read back, not retrained) on the same instructions of a run directory (the first N of each
task, mixed): variant `alro` (SFT + soft lambda + permutation loss, paper weights) and variant
`sft` (`--no-alro`). Each writes its adapter, log and loss curve under runs/<name>/tune/<variant>/;
the loss curves are copied to bench/ and the sizes, times and losses go to the section
"tuning-runs" of BENCHMARKS.md (with --write).

    python bench/tuning_runs.py [--name bench-prompts] [--limit 128] [--write]
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
VARIANTS = {"alro": [], "sft": ["--no-alro"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench-prompts", help="run whose prompts/ to train on")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--instructions", type=int, default=5000, help="the run's sampling.instructions")
    parser.add_argument("--limit", type=int, default=128, help="instructions per task (first N)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--logging-steps", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    for variant, extra in VARIANTS.items():
        command = [sys.executable, "-m", "recranker.cli.main", "tune", "--name", args.name, "--runs-dir", args.runs_dir,
                   "--instructions", str(args.instructions), "--limit", str(args.limit), "--epochs", str(args.epochs),
                   "--variant", variant, "--set", f"tuning.logging_steps={args.logging_steps}", *extra]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - started
        folder = Path(args.runs_dir) / args.name / "tune" / variant
        summary = json.loads((folder / "summary.json").read_text())
        log = [r for r in json.loads((folder / "log.json").read_text()) if "loss" in r]
        shutil.copyfile(folder / "loss_curve.png", HERE / f"tuning_loss_{variant}.png")
        rows.append((variant, wall, summary, log))
    body = report(rows, args)
    print(body)
    if args.write:
        write_section("tuning-runs", body, f"python bench/tuning_runs.py --name {args.name} --limit {args.limit} "
                                           f"--epochs {args.epochs:g} --write")


def report(rows: list, args: argparse.Namespace) -> str:
    lines = [
        f"SmolLM2-135M-Instruct, LoRA with the default settings, {args.epochs:g} epoch over the first {args.limit} "
        f"ML-100K instructions of each task (run `{args.name}`), mixed.",
        "",
        "| variant | examples | listwise with 2nd view | steps | tokens | train s | tokens/s | peak RSS MiB "
        "| mean logged loss, first half of the steps (sft / rank / perm) | second half |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, _, s, log in rows:
        half = s["steps"] / 2

        def terms(part: list[dict]) -> str:
            means = [[r[k] for r in part if k in r] for k in ("sft", "rank", "perm")]
            return " / ".join(f"{sum(m) / len(m):.3f}" if m else "-" for m in means)
        views = s["tasks"].get("listwise", {}).get("with_second_view", 0)
        lines.append(f"| {variant} | {s['examples']} | {views} | {s['steps']} | {s['tokens']:,} | "
                     f"{s['seconds']:.0f} | {s['tokens_per_s']:.0f} | {s['peak_rss_mib']:.0f} | "
                     f"{terms([r for r in log if r['step'] <= half])} | {terms([r for r in log if r['step'] > half])} |")
    lines += ["", "Loss curves: " + ", ".join(f"`bench/tuning_loss_{v}.png`" for v, *_ in rows)
              + f" (also `runs/{args.name}/tune/<variant>/loss_curve.png`)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
