"""The LLM ranking stages: one per (backbone, system, split stage), resumable by chunks of users.

    rank/<backbone>/<system>/<stage>/   outputs.npz (the LLM's answers on the candidates),
                                        summary.json (time, tokens); part-*.npz while it runs
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import NamedTuple

import numpy as np

from recranker.artifacts import Stage, fingerprint, read_json, write_json
from recranker.config import StudyConfig
from recranker.ranking.backend import Usage
from recranker.split import Split
from recranker.stages.base import torch_device, writes_run
from recranker.stages.population import llm_candidates
from recranker.stages.prompts import full_hint_models, prompt_renderer, template_texts
from recranker.stages.models import ModelCache, pass_ranking, ranking_model_inputs
from recranker.stages.retrieval import retrieval_stage

log = logging.getLogger(__name__)


#: version of the ranking outputs' layout and prompts: a change reruns earlier runs' ranking (2: inputs are
#: whole config sections; the listwise answer's length is prompts.listwise_top)
RANKING_FORMAT = 2


def ranking_systems(cfg: StudyConfig) -> list[str]:
    """The LLM passes the config asks for (tuned first, then no_hints and zero_shot baselines)."""
    return ["tuned"] + [s for s in ("no_hints", "zero_shot") if s in cfg.ranking.baselines]


def rank_stage(cfg: StudyConfig, backbone: str, system: str, stage: str) -> Stage:
    """LLM ranking of `backbone`'s candidates at `stage` by `system`. Its inputs are whole config
    sections less what cannot change the LLM's answers (`RankingConfig.NOT_ASKED`,
    `PromptsConfig.TRAINING_ONLY`), so a new setting is an input unless declared otherwise: a
    stale pass can never be read back. Also the templates, the model and the candidates."""
    return Stage(cfg.run_dir, f"rank/{backbone}/{system}/{stage}", inputs=fingerprint(
        asked_settings(cfg, system, stage), shown_settings(cfg, system), template_texts(cfg, cfg.ranked_tasks),
        ranking_model_inputs(cfg, system), retrieval_stage(cfg, backbone).inputs, RANKING_FORMAT))


def asked_settings(cfg: StudyConfig, system: str, stage: str) -> dict:
    """The ranking section as it shapes `system`'s requests over `stage`'s users: all of it but
    `NOT_ASKED`, with the tasks ranked and the listwise passes made."""
    r = pass_ranking(cfg, system, stage)
    asked = r.model_dump(mode="json", exclude=set(r.NOT_ASKED))
    asked.update(tasks=cfg.ranked_tasks, passes=r.bootstrap if "bootstrapping" in r.baselines else 1)
    return asked


def shown_settings(cfg: StudyConfig, system: str) -> dict:
    """The prompts section as it shapes an inference prompt: all of it but `TRAINING_ONLY`, hints
    off for the no-hints system."""
    p = cfg.prompts
    shown = p.model_dump(mode="json", exclude=p.TRAINING_ONLY)
    shown["hints"]["enabled"] = system != "no_hints" and p.hints.enabled
    return shown


@writes_run
def run_rank(cfg: StudyConfig, backbone: str, system: str, stage: str, *, split: Split, models: ModelCache,
             progress: bool = True):
    """The LLM's outputs on `backbone`'s candidates (`recranker.ranking.llm`), or the finished
    stage's; an interrupted stage goes on from the chunks of users it saved."""
    from recranker.ranking.llm import RankerOutputs

    stage_obj = rank_stage(cfg, backbone, system, stage)
    if stage_obj.done():
        log.info("rank/%s/%s/%s: done, reading %s", backbone, system, stage, stage_obj.path)
        return RankerOutputs.load(stage_obj.path / "outputs.npz"), read_json(stage_obj.path / "summary.json")
    candidates = llm_candidates(cfg, split, backbone, stage)
    folder = stage_obj.path
    resumed = stage_obj.resume_or_start()
    done = [RankerOutputs.load(p) for p in sorted(folder.glob("part-*.npz"))] if resumed else []
    seen = set(np.concatenate([d.users for d in done]).tolist()) if done else set()
    todo = np.array([u not in seen for u in candidates.users], dtype=bool)
    saved = itertools.count(len(done))
    started = time.perf_counter()
    usage = Usage().as_dict()
    if todo.any() or not done:  # no covered user at all still gives (empty) outputs
        part, usage = rank_users(cfg, system, stage, split, candidates.select(todo), models, progress=progress,
                                 on_chunk=lambda part: part.save(folder / f"part-{next(saved):05d}.npz"))
        done.append(part)
    seconds = time.perf_counter() - started
    outputs = RankerOutputs.concat(done)
    outputs = outputs.select(np.argsort(outputs.users))
    outputs.save(folder / "outputs.npz")
    for part in folder.glob("part-*.npz"):
        part.unlink()
    summary = {"backbone": backbone, "system": system, "stage": stage, "users": len(outputs), "resumed": resumed,
               "device": torch_device(), "backend": cfg.ranking.backend, "dtype": cfg.ranking.dtype, "workers": cfg.ranking.workers,
               **pass_cost(usage, int(todo.sum()), seconds)}
    write_json(folder / "summary.json", summary)
    stage_obj.finish({"seconds": seconds})
    return outputs, summary


def rank_users(cfg: StudyConfig, system: str, stage: str, split: Split, candidates, models: ModelCache, *,
               on_chunk, progress: bool = True):
    """(`RankerOutputs`, backend usage) of `system` on `candidates` at `stage`, chunk by chunk
    (`on_chunk` sees each): in this process, or over `ranking.workers` Ray workers
    (`recranker.stages.shard`)."""
    from recranker.ranking.llm import LLMRanker

    if cfg.ranking.workers > 1:
        from recranker.stages.shard import rank_sharded

        return rank_sharded(cfg, system, stage, candidates, on_chunk=on_chunk, progress=progress)
    hints = full_hint_models(cfg, split, progress=progress) if system != "no_hints" and cfg.prompts.hints.enabled else None
    backend = models.backend(cfg, system)
    ranker = LLMRanker(backend, prompt_renderer(cfg, split, backend.tokenizer, cfg.ranked_tasks), split, hints,
                       pass_ranking(cfg, system, stage))
    outputs = ranker.rank(candidates, stage, chunk=cfg.ranking.chunk_users, progress=progress, on_chunk=on_chunk)
    return outputs, backend.usage.as_dict()


def pass_cost(usage: dict, users: int, seconds: float) -> dict:
    """Time and tokens of an LLM pass over `users` users, in all and per user."""
    return {"users_this_run": users, "seconds": seconds, "usage": usage,
            "seconds_per_user": seconds / users if users else None,
            "tokens_per_user": {k: v / users for k, v in usage.items() if k.endswith("tokens")} if users else None}


class Pass(NamedTuple):
    """One LLM pass of a study: `system` ("tuned", "no_hints" or "zero_shot") over `backbone`'s
    candidates of the users evaluated at `split` ("valid" or "test"); its stage is
    rank/<backbone>/<system>/<split>/ (`rank_stage(cfg, *pass_)`)."""

    backbone: str
    system: str
    split: str


def ranking_passes(cfg: StudyConfig) -> list[Pass]:
    """Every LLM pass of the study, in the order they run (one model loaded at a time):
    validation users only where the hybrid's weights are tuned."""
    passes = []
    for system in ranking_systems(cfg):
        for backbone in cfg.retrieval.models:
            splits = ["valid", "test"] if system == "tuned" and cfg.ranking.tune_weights else ["test"]
            passes += [Pass(backbone, system, split) for split in splits]
    return passes
