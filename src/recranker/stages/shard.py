"""Batch ranking sharded over Ray workers (`ranking.workers` > 1, `recranker rank --workers N`).

The users are cut into exactly the chunks one process ranks (`ranking.chunk_users` users each, in
order); chunk k goes to worker k mod N. Each worker is a Ray actor that loads the run's model,
hint models and split once, read-only (it never takes the run's lock, which the driver holds, and
never tunes: the tune stage must be finished), and ranks whole chunks with
`LLMRanker.rank_chunk`, the function one process calls for the same chunk, so a chunk's prompts
and batches are the same either way. The driver saves each chunk as it comes back, so an
interrupted sharded stage resumes like any other.

Ray starts a local cluster of N CPUs (one thread per worker), or joins the one `RAY_ADDRESS`
names (then every node needs the run folder at the same path, e.g. on a shared file system). Needs
the `ray` extra.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from tqdm.auto import tqdm

from recranker.config import StudyConfig, parse_config
from recranker.errors import RecrankerError
from recranker.arms import Arm
from recranker.ranking.backend import Usage
from recranker.ranking.llm import LLMRanker, RankerOutputs
from recranker.runs import FinishedRun
from recranker.types import Rankings

log = logging.getLogger(__name__)


def expected_inputs(cfg: StudyConfig) -> dict[str, str]:
    """The fingerprints a worker's finished stages must have: the driver's (split, hint models, tune)."""
    from recranker.stages.retrieval import retrieval_stage
    from recranker.stages.split import split_stage
    from recranker.stages.tune import tune_stage

    hints = cfg.prompts.hints
    expected = {"split": split_stage(cfg).inputs}
    expected.update({f"retrieval/{name}": retrieval_stage(cfg, name).inputs
                     for name in (hints.rating_model, hints.ranking_model)})
    expected[f"tune/{cfg.tuning.variant}"] = tune_stage(cfg).inputs
    return expected


def read_only_ranker(cfg: StudyConfig, arm: Arm, target: str, expected: dict[str, str]) -> LLMRanker:
    """The `LLMRanker` of `arm`'s pass over `target`'s users, from finished stages with the
    `expected` fingerprints only (`recranker.runs.FinishedRun`; no lock taken, nothing tuned)."""
    from recranker.stages.models import ModelCache, untuned_model

    run = FinishedRun(cfg, cfg.run_dir / "tune" / cfg.tuning.variant, expected)
    if untuned_model(cfg, arm) is None:  # the run's tuned model
        run.require(f"tune/{cfg.tuning.variant}")
    split = run.split()
    hints = run.hint_models(split) if cfg.shows_hints(arm) else None
    return cfg.llm_ranker(ModelCache(train=False).backend(cfg, arm), split, hints, arm, target)


class RankWorker:
    """A Ray actor's state: one read-only ranker."""

    def __init__(self, config: dict, arm: Arm, target: str, expected: dict[str, str], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.target = target
        self.ranker = read_only_ranker(parse_config(config, "<ray worker>"), arm, target, expected)

    def rank(self, candidates: Rankings) -> tuple[RankerOutputs, Usage]:
        """One chunk's outputs and the backend usage it cost."""
        before = self.ranker.backend.usage.snapshot()
        outputs = self.ranker.rank_chunk(candidates, self.target)
        return outputs, self.ranker.backend.usage.since(before)


def rank_sharded(cfg: StudyConfig, arm: Arm, target: str, candidates: Rankings, *, on_chunk,
                 progress: bool = True) -> tuple[RankerOutputs, dict]:
    """(`RankerOutputs` of every user of `candidates`, in order; summed usage) from
    `ranking.workers` Ray workers; `on_chunk` sees each chunk as it comes back."""
    try:
        import ray
    except ImportError:
        raise RecrankerError("ranking.workers > 1 needs Ray: pip install 'recranker[ray]'") from None
    workers, size = cfg.ranking.workers, cfg.ranking.chunk_users
    chunks = [np.arange(start, min(start + size, len(candidates))) for start in range(0, len(candidates), size)]
    expected = expected_inputs(cfg)
    if not chunks:
        return read_only_ranker(cfg, arm, target, expected).rank_chunk(candidates, target), Usage().as_dict()
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, **({} if address else {"num_cpus": workers}), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        actor = ray.remote(num_cpus=1)(RankWorker)
        config = cfg.model_dump(mode="json")
        pool = [actor.remote(config, arm, target, expected, 1) for _ in range(min(workers, len(chunks)))]
        pending = {pool[k % len(pool)].rank.remote(candidates.select(rows)): k for k, rows in enumerate(chunks)}
        results: dict[int, RankerOutputs] = {}
        usage = Usage()
        bar = tqdm(total=len(candidates), desc=f"LLM ranking ({target}, {len(pool)} Ray workers)", unit="user",
                   disable=not progress)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(ready[0])
            outputs, cost = ray.get(ready[0])
            on_chunk(outputs)
            results[k] = outputs
            usage = usage + cost
            bar.update(len(chunks[k]))
        bar.close()
    finally:
        if started_here:
            ray.shutdown()
    return RankerOutputs.concat([results[k] for k in sorted(results)]), usage.as_dict()
