"""Benchmark: batch ranking over Ray workers against one process, on a study's test users.

Ranks one LLM pass of a run (`--arm` over the first backbone's candidates of the test users
whose target is among them, the users the study asks the LLM about) twice: in this process (torch
threads = cores), then over `--workers` Ray workers (one thread each, `ranking.workers`). Both
times include loading the model and hint models. Prints the wall times and whether every output
array of the sharded pass equals the one-process pass.

The run's split and the hint models' retrieval stages must be finished (`recranker retrieve`), and
for `--arm tuned` its tune stage.

    python bench/shard.py configs/ml-100k-cpu.yaml --arm zero_shot [--workers 2] [--users N]
        [--set ranking.generate=false] [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402


def timed_pass(cfg, arm: str, split, candidates) -> tuple:
    """(outputs, seconds, chunks saved) of one pass of `arm` over `candidates`."""
    from recranker.stages.models import ModelCache
    from recranker.stages.rank import rank_users

    started = time.perf_counter()
    chunks: list = []
    outputs, _ = rank_users(cfg, arm, "test", split, candidates, ModelCache(train=False), on_chunk=chunks.append)
    return outputs, time.perf_counter() - started, len(chunks)


def differing(one, other) -> list[str]:
    """The `RankerOutputs` fields whose arrays are not identical (NaN equal to NaN)."""
    return [f.name for f in fields(one)
            if not np.array_equal(getattr(one, f.name), getattr(other, f.name),
                                  equal_nan=np.asarray(getattr(one, f.name)).dtype.kind == "f")]


def main() -> None:
    from recranker.cli.options import set_changes
    from recranker.config import load_config, override
    from recranker.stages.population import llm_candidates
    from recranker.runs import FinishedRun
    from recranker.stages.shard import expected_inputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--arm", default="zero_shot", help="tuned, zero_shot or no_hints")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, help="only the first N covered test users")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    cfg = override(load_config(args.config), set_changes(args.set))
    split = FinishedRun(cfg, cfg.run_dir / "tune" / cfg.tuning.variant, expected_inputs(cfg)).split()
    backbone = next(iter(cfg.retrieval.models))
    candidates = llm_candidates(cfg, split, backbone, "test")
    if args.users:
        candidates = candidates.select(slice(0, args.users))
    one, one_s, one_chunks = timed_pass(override(cfg, {"ranking.workers": 1}), args.arm, split, candidates)
    many, many_s, many_chunks = timed_pass(override(cfg, {"ranking.workers": args.workers}), args.arm, split,
                                           candidates)
    diff = differing(one, many)
    users = len(candidates)
    rows = [("one process", os.cpu_count(), one_s, one_chunks, "-"),
            (f"{args.workers} Ray workers", 1, many_s, many_chunks,
             "yes, every array" if not diff else f"NO: {', '.join(diff)}")]
    lines = [f"Run `{cfg.run_dir}` ({args.config}), pass `{args.arm}` over {backbone}'s candidates of the "
             f"{users} test users whose target is among them; settings {args.set or 'as configured'}; "
             f"`ranking.chunk_users` {cfg.ranking.chunk_users}. Times include loading the model and hint models "
             "(in each Ray worker: actor start, model load).",
             "",
             "| setting | torch threads per process | users | wall s | s/user | chunks | outputs identical to one process |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {threads} | {users} | {s:.1f} | {s / users:.2f} | {chunks} | {same} |"
              for name, threads, s, chunks, same in rows]
    body = "\n".join(lines)
    print(body)
    if args.write:
        sets = "".join(f" --set {s}" for s in args.set)
        write_section("shard", body, f"python bench/shard.py {args.config} --arm {args.arm} "
                                     f"--workers {args.workers}{f' --users {args.users}' if args.users else ''}{sets} --write")
    if diff:
        raise SystemExit(f"the sharded outputs differ from one process's: {diff}")


if __name__ == "__main__":
    main()
