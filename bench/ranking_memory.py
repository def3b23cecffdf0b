"""Benchmark: peak memory of LLM ranking per backend setting, each in a process of its own.

Ranks the first N covered test users (ML-100K, LightGCN's top 10, the untuned default model, all
three tasks with hints) as `bench/ranking_speed.py` does, once per setting, and reports the
process's peak resident set. Writes the section "ranking-memory" of BENCHMARKS.md (with --write).

    python bench/ranking_memory.py [--users 16] [--settings ...] [--cache-tokens N ...] [--section ranking-memory] [--write]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker.ranking.config import RankingConfig  # noqa: E402

#: name: (dtype: a torch dtype's name or a `ranking.dtype`, oneDNN linears, shared stems)
SETTINGS = {"today's: fp32, MKL matmuls": ("float32", False, True), "fp32, oneDNN linears": ("float32", True, True),
            "fp32, oneDNN linears, no shared stems": ("float32", True, False), "bf16": ("bfloat16", False, True),
            "bf16-mlp": ("bfloat16-mlp", False, True), "bf16-mlp, no shared stems": ("bfloat16-mlp", False, False)}


def worker(args) -> None:
    import torch

    from ranking_speed import bench_model, rank, setting

    from recranker.ranking.backend import TransformersBackend
    from recranker.tuning.model import DTYPES

    dtype, onednn, stems = SETTINGS[args.worker]
    torch.set_grad_enabled(False)
    cfg, split, candidates, hints = setting(args)
    tokenizer, model = bench_model(args.model, DTYPES.get(dtype, dtype), onednn)
    started = time.perf_counter()
    backend = TransformersBackend(model, tokenizer, share_stems=stems, cache_tokens=args.cache_tokens[0])
    out, seconds = rank(backend, cfg, split, hints, candidates)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"setting": args.worker, "cache_tokens": backend.cache_tokens, "users": len(out),
                      "s/user": seconds / len(out), "peak_rss_mib": peak, "wall_s": time.perf_counter() - started}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="ml-100k-cpu")
    parser.add_argument("--config")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), metavar="SETTING",
                        help=f"the settings to measure, in order (default: all of {', '.join(SETTINGS)})")
    parser.add_argument("--cache-tokens", type=int, nargs="+", default=[RankingConfig().cache_tokens], metavar="N",
                        help="ranking.cache_tokens budgets: each setting is measured once per budget (default: the default)")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--section", default="ranking-memory", help="the section of BENCHMARKS.md to write")
    parser.add_argument("--worker", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    rows = []
    for name in args.settings:
        for budget in args.cache_tokens:
            command = [sys.executable, __file__, "--worker", name, "--name", args.name, "--model", args.model,
                       "--users", str(args.users), "--cache-tokens", str(budget)] + (["--config", args.config] if args.config else [])
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    lines = [f"Each setting in a process of its own: load the data, hint models and {args.model}, rank the first "
             f"{args.users} covered test users (as bench/ranking_speed.py); peak resident set of the whole process; "
             "machine otherwise idle.", "", "| setting | cache_tokens | users | s/user | peak RSS MiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['cache_tokens']} | {r['users']} | {r['s/user']:.2f} | {r['peak_rss_mib']:.0f} |"
              for r in rows]
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_section(args.section, body, "python bench/ranking_memory.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
