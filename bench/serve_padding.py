"""Benchmark: what the service's batch-width padding (`SERVE_PAD_MULTIPLE`) costs in latency.

Loads a run's `Reranker` once (transformers backend, in this process) and answers the same real
requests (test users of the run: their history before the test target, the backbone's candidates)
with the backend padding each batch's width to a multiple of each of `--pads` (1: no padding, as
the study runs; the service's `SERVE_PAD_MULTIPLE` by default), alternating the settings request by
request so all see the same machine. Reports seconds per request alone and per batch of 8, and
whether the rankings agree with the unpadded ones.

    python bench/serve_padding.py --run runs/control-positive [--requests 12] [--pads 1 8 16 32] [--write]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402
from serve import bodies  # noqa: E402


def timed(reranker, requests, pad: int) -> tuple[float, list]:
    reranker.backend.pad_multiple = pad
    started = time.perf_counter()
    results = reranker.rank_many(requests)
    return time.perf_counter() - started, [[i.item for i in r.items] for r in results]


def main() -> None:
    from recranker.serve import RankRequest, Reranker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--pads", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    reranker = Reranker.load(args.run)
    requests = [RankRequest(b["history"], b["candidates"]) for b in bodies(args.run, args.requests + 2, 30)]
    pads = list(dict.fromkeys([1, *args.pads]))
    for pad in pads:  # warm-up: the first call of each shape pays oneDNN's set-up
        timed(reranker, requests[:2], pad)
    alone: dict[int, list[float]] = {pad: [] for pad in pads}
    same = {pad: 0 for pad in pads}
    for request in requests[2:]:
        reference = None
        for pad in pads:
            seconds, ranking = timed(reranker, [request], pad)
            alone[pad].append(seconds)
            reference = ranking if reference is None else reference
            same[pad] += ranking == reference
    batched = {pad: timed(reranker, requests[2:10], pad)[0] for pad in pads}
    base = np.mean(alone[1])
    rows = [f"| {pad} | {np.mean(alone[pad]):.2f} | {np.median(alone[pad]):.2f} | {100 * (np.mean(alone[pad]) / base - 1):+.0f}% "
            f"| {batched[pad]:.1f} | {same[pad]} of {len(alone[pad])} |" for pad in pads]
    body = "\n".join([
        f"Run `{args.run}`, transformers backend, float32, one process; {len(alone[1])} real test users' requests, each "
        "answered alone with each padding in turn, then 8 of them as one batch. The machine was otherwise idle.", "",
        "| pad multiple | s/request alone (mean) | (median) | vs no padding | s per batch of 8 | rankings as unpadded |",
        "|---|---|---|---|---|---|", *rows, "",
        "The padding is masked: only float rounding can change an answer."])
    print(body)
    if args.write:
        write_section("serve-padding", body, f"python bench/serve_padding.py --run {args.run} --requests {args.requests} "
                      f"--pads {' '.join(map(str, args.pads))}")


if __name__ == "__main__":
    main()
