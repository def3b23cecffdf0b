"""Benchmark: where one training epoch of each backbone spends its time. Into BENCHMARKS.md.

For each model it builds the model on the default split of `--data` (the settings of
bench/backbones.py for that data), then times, in CPU seconds of this process (so a busy
neighbour does not inflate the figures), one training epoch and one validation pass, and
profiles the epoch with cProfile: the functions with the most time of their own. A row per model;
the top functions per model below the table.

    python bench/backbone_profile.py --data ml-1m [--models sasrec cl4srec] [--threads 1] [--write]

CPU time, not wall time: run it on an idle machine for wall-clock figures (`wall s` beside).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from backbones import SETTINGS, TORCH  # noqa: E402

from recranker.config import StudyConfig  # noqa: E402
from recranker.retrieval import make_retriever  # noqa: E402
from recranker.stages import prepare_split  # noqa: E402


def timed(fn):
    """(result, cpu seconds, wall seconds) of fn()."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def top_functions(profile: cProfile.Profile, n: int) -> list[tuple[str, float, float]]:
    """The n functions with the most own time: (name, own s, cumulative s)."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (file, line, name), (_, _, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = name if file == "~" else f"{Path(file).name}:{line}({name})"
        rows.append((where, own, cum))
    return sorted(rows, key=lambda r: -r[1])[:n]


def profile_model(name: str, split, settings: dict, top: int) -> dict:
    model = make_retriever(name, settings)
    generator = torch.Generator().manual_seed(model.config.seed)
    torch.manual_seed(model.config.seed)
    model.split = split
    optimizer, build_cpu, _ = timed(lambda: model.build(split, generator))
    model.module.to(model.device)
    model.module.train()
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    loss, epoch_cpu, epoch_wall = timed(lambda: model.train_epoch(split, optimizer, generator))
    profile.disable()
    model.module.eval()
    with torch.no_grad():
        _, valid_cpu, valid_wall = timed(lambda: model.validate(split))
    return {"model": name, "build": build_cpu, "epoch": epoch_cpu, "epoch_wall": epoch_wall,
            "valid": valid_cpu, "valid_wall": valid_wall, "loss": loss, "top": top_functions(profile, top)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ml-1m")
    parser.add_argument("--models", nargs="+", default=TORCH)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--top", type=int, default=6, help="functions listed per model")
    parser.add_argument("--label", default="", help="a word for the section's heading line (e.g. before, after)")
    parser.add_argument("--section", default=None, help="default: backbone-profile-<data>")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = StudyConfig.model_validate({"name": f"bench-backbones-{args.data}", "data": {"format": args.data}})
    split = prepare_split(cfg)
    rows = []
    for name in args.models:
        row = profile_model(name, split, SETTINGS.get(args.data, {}).get(name, {}), args.top)
        print(f"{name}: epoch {row['epoch']:.1f} cpu s ({row['epoch_wall']:.1f} wall), "
              f"validation {row['valid']:.1f} cpu s, loss {row['loss']:.4f}", flush=True)
        for where, own, cum in row["top"]:
            print(f"    {own:8.2f} {cum:8.2f}  {where}")
        rows.append(row)
    lines = ["| model | build cpu s | epoch cpu s | epoch wall s | validation cpu s | validation wall s | loss |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['build']:.1f} | {r['epoch']:.1f} | {r['epoch_wall']:.1f} | "
                     f"{r['valid']:.1f} | {r['valid_wall']:.1f} | {r['loss']:.4f} |")
    detail = []
    for r in rows:
        detail.append(f"- {r['model']}: " + "; ".join(f"`{w}` {own:.1f} s own" for w, own, _ in r["top"]))
    body = (f"{args.label + ': ' if args.label else ''}one training epoch and one validation pass per model on "
            f"{args.data}'s default split, settings of bench/backbones.py; CPU seconds of this process "
            f"(torch threads: {torch.get_num_threads()}); the functions with the most own time (cProfile) below.\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(detail))
    print(body)
    if args.write:
        write_section(args.section or f"backbone-profile-{args.data}", body,
                      command=shlex.join(["python", "bench/backbone_profile.py", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
