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
from recranker.hints import HintModels
from recranker.ranking.llm import LLMRanker, RankerOutputs
from recranker.split import Split
from recranker.types import Rankings

log = logging.getLogger(__name__)


def finished_split(cfg: StudyConfig) -> Split:
    """The run's split, read without the lock; an error when the stage is not finished."""
    from recranker.stages.split import split_stage

    stage = split_stage(cfg)
    if not stage.done():
        raise RecrankerError(f"{cfg.run_dir}: no finished split for this config; run `recranker data` first")
    return Split.load(str(stage.path))


def finished_hint_models(cfg: StudyConfig, split: Split) -> HintModels:
    """The hint models of the finished retrieval stages, read without the lock."""
    from recranker.stages.retrieval import load_backbone, retrieval_stage

    names = (cfg.prompts.hints.rating_model, cfg.prompts.hints.ranking_model)
    missing = [n for n in dict.fromkeys(names) if not retrieval_stage(cfg, n).done()]
    if missing:
        raise RecrankerError(f"{cfg.run_dir}: the hint models {missing} have no finished retrieval stage")
    return HintModels(*[load_backbone(cfg, name, split) for name in names])


def read_only_ranker(cfg: StudyConfig, system: str, stage: str) -> LLMRanker:
    """The `LLMRanker` of `system`'s pass over `stage`, from finished stages only (no lock taken)."""
    from recranker.stages.prompts import prompt_renderer
    from recranker.stages.models import ModelCache, pass_ranking

    split = finished_split(cfg)
    hints = finished_hint_models(cfg, split) if system != "no_hints" and cfg.prompts.hints.enabled else None
    backend = ModelCache(train=False).backend(cfg, system)
    renderer = prompt_renderer(cfg, split, backend.tokenizer, cfg.ranked_tasks)
    return LLMRanker(backend, renderer, split, hints, pass_ranking(cfg, system, stage))


class RankWorker:
    """A Ray actor's state: one read-only ranker."""

    def __init__(self, config: dict, system: str, stage: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.stage = stage
        self.ranker = read_only_ranker(parse_config(config, "<ray worker>"), system, stage)

    def rank(self, candidates: Rankings) -> tuple[RankerOutputs, dict]:
        """One chunk's outputs and the backend usage it cost."""
        before = self.ranker.backend.usage.as_dict()
        outputs = self.ranker.rank_chunk(candidates, self.stage)
        after = self.ranker.backend.usage.as_dict()
        return outputs, {k: after[k] - before[k] for k in after}


def rank_sharded(cfg: StudyConfig, system: str, stage: str, candidates: Rankings, *, on_chunk,
                 progress: bool = True) -> tuple[RankerOutputs, dict]:
    """(`RankerOutputs` of every user of `candidates`, in order; summed usage) from
    `ranking.workers` Ray workers; `on_chunk` sees each chunk as it comes back."""
    try:
        import ray
    except ImportError:
        raise RecrankerError("ranking.workers > 1 needs Ray: pip install 'recranker[ray]'") from None
    workers, size = cfg.ranking.workers, cfg.ranking.chunk_users
    chunks = [np.arange(start, min(start + size, len(candidates))) for start in range(0, len(candidates), size)]
    if not chunks:
        return read_only_ranker(cfg, system, stage).rank_chunk(candidates, stage), {}
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, **({} if address else {"num_cpus": workers}), include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        actor = ray.remote(num_cpus=1)(RankWorker)
        config = cfg.model_dump(mode="json")
        pool = [actor.remote(config, system, stage, 1) for _ in range(min(workers, len(chunks)))]
        pending = {pool[k % len(pool)].rank.remote(candidates.select(rows)): k for k, rows in enumerate(chunks)}
        results: dict[int, RankerOutputs] = {}
        usage: dict[str, float] = {}
        bar = tqdm(total=len(candidates), desc=f"LLM ranking ({stage}, {len(pool)} Ray workers)", unit="user",
                   disable=not progress)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(ready[0])
            outputs, cost = ray.get(ready[0])
            on_chunk(outputs)
            results[k] = outputs
            usage = {key: usage.get(key, 0) + value for key, value in cost.items()}
            bar.update(len(chunks[k]))
        bar.close()
    finally:
        if started_here:
            ray.shutdown()
    return RankerOutputs.concat([results[k] for k in sorted(results)]), usage
