"""Benchmark: what verifying a cached asset costs when it is read (`recranker.assets.require`).

For each fetched asset: its size, the first check in a process (every file hashed, sha256) and a
repeated check in the same process (files unchanged: a stat of each), beside what loading it
costs anyway (the dataset's loader, or the model's `from_pretrained`). The first check is taken
with the files in the page cache (as on any read after the first).

    python bench/cache_verify.py [--repeat 5] [--write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from recranker import asset_cache, assets  # noqa: E402


def load_cost(name: str) -> float:
    """Seconds to load the asset as the study does."""
    started = time.perf_counter()
    if name == assets.DEFAULT_MODEL:
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(assets.asset_dir(name))
    else:
        from recranker.data.registry import load_dataset

        load_dataset(name, assets.asset_dir(name))
    return time.perf_counter() - started


def measure(name: str, repeat: int) -> dict:
    folder = assets.asset_dir(name)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    first, again = [], []
    for _ in range(repeat):
        asset_cache._VERIFIED.clear()
        started = time.perf_counter()
        assets.require(name)
        first.append(time.perf_counter() - started)
        started = time.perf_counter()
        assets.require(name)
        again.append(time.perf_counter() - started)
    return {"asset": name, "files": len(list(folder.iterdir())) - 1, "mib": size / 2**20,
            "first": statistics.median(first), "again": statistics.median(again), "load": load_cost(name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    names = [n for n in ("ml-100k", "ml-1m", "bookcrossing", assets.DEFAULT_MODEL) if assets.is_fetched(n)]
    rows = [measure(name, args.repeat) for name in names]
    lines = ["| asset | files | MiB | first check in a process, s | again (unchanged), ms | loading it, s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['asset']} | {r['files']} | {r['mib']:.1f} | {r['first']:.3f} | {r['again'] * 1000:.2f} | "
              f"{r['load']:.2f} |" for r in rows]
    body = ("Every file an asset provides is checked against the size and sha256 recorded at fetch, once per "
            "process (then a stat of each file while they stay unchanged). Median of "
            f"{args.repeat} checks, files in the page cache.\n\n" + "\n".join(lines))
    print(body)
    if args.write:
        write_section("cache-verify", body, f"python bench/cache_verify.py --repeat {args.repeat}")


if __name__ == "__main__":
    main()
