"""The LLM ranking stages: one per (backbone, arm, target), resumable by chunks of users.

    rank/<backbone>/<arm>/<target>/     outputs.npz (the LLM's answers on the candidates),
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
from recranker.arms import ARMS, MAIN_ARM, Arm
from recranker.ranking.backend import Usage
from recranker.split import Split
from recranker.stages.base import torch_device, writes_run
from recranker.stages.population import llm_candidates
from recranker.stages.prompts import full_hint_models, template_texts
from recranker.stages.models import ModelCache, ranking_model_inputs
from recranker.stages.retrieval import retrieval_stage

log = logging.getLogger(__name__)


#: version of the ranking outputs' layout and prompts: a change reruns earlier runs' ranking (2: inputs are
#: whole config sections; the listwise answer's length is prompts.listwise_top)
RANKING_FORMAT = 2


def ranking_arms(cfg: StudyConfig) -> list[Arm]:
    """The LLM arms the config asks for (the tuned one first, then `ranking.arms`)."""
    return [MAIN_ARM, *cfg.ranking.arms]


def rank_stage(cfg: StudyConfig, backbone: str, arm: Arm, target: str) -> Stage:
    """LLM ranking of `backbone`'s candidates of `target`'s users by `arm`. Its inputs are whole config
    sections less what cannot change the LLM's answers (`RankingConfig.NOT_ASKED`,
    `PromptsConfig.TRAINING_ONLY`), so a new setting is an input unless declared otherwise: a
    stale pass can never be read back. Also the templates, the model and the candidates."""
    return Stage(cfg.run_dir, f"rank/{backbone}/{arm}/{target}", inputs=fingerprint(
        asked_settings(cfg, arm, target), shown_settings(cfg, arm), template_texts(cfg, cfg.ranked_tasks),
        ranking_model_inputs(cfg, arm), retrieval_stage(cfg, backbone).inputs, RANKING_FORMAT))


def asked_settings(cfg: StudyConfig, arm: Arm, target: str) -> dict:
    """The ranking section as it shapes `arm`'s requests over `target`'s users: all of it but
    `NOT_ASKED`, with the tasks ranked and the listwise passes made."""
    r = cfg.ranking.for_pass(arm, target)
    asked = r.model_dump(mode="json", exclude=set(r.NOT_ASKED))
    asked.update(tasks=cfg.ranked_tasks, passes=r.bootstrap, dtype=r.resolved_dtype(torch_device()))
    return asked


def shown_settings(cfg: StudyConfig, arm: Arm) -> dict:
    """The prompts section as it shapes an inference prompt: all of it but `TRAINING_ONLY`, hints
    off for an arm without hints."""
    p = cfg.prompts
    shown = p.model_dump(mode="json", exclude=p.TRAINING_ONLY)
    shown["hints"]["enabled"] = cfg.shows_hints(arm)
    return shown


@writes_run
def run_rank(cfg: StudyConfig, backbone: str, arm: Arm, target: str, *, split: Split, models: ModelCache,
             progress: bool = True):
    """The LLM's outputs on `backbone`'s candidates (`recranker.ranking.llm`), or the finished
    stage's; an interrupted stage goes on from the chunks of users it saved."""
    from recranker.ranking.llm import RankerOutputs

    stage_obj = rank_stage(cfg, backbone, arm, target)
    if stage_obj.done():
        log.info("rank/%s/%s/%s: done, reading %s", backbone, arm, target, stage_obj.path)
        return RankerOutputs.load(stage_obj.path / "outputs.npz"), read_json(stage_obj.path / "summary.json")
    candidates = llm_candidates(cfg, split, backbone, target)
    folder = stage_obj.path
    resumed = stage_obj.resume_or_start()
    done = [RankerOutputs.load(p) for p in sorted(folder.glob("part-*.npz"))] if resumed else []
    seen = set(np.concatenate([d.users for d in done]).tolist()) if done else set()
    todo = np.array([u not in seen for u in candidates.users], dtype=bool)
    saved = itertools.count(len(done))
    started = time.perf_counter()
    usage = Usage().as_dict()
    if todo.any() or not done:  # no covered user at all still gives (empty) outputs
        part, usage = rank_users(cfg, arm, target, split, candidates.select(todo), models, progress=progress,
                                 on_chunk=lambda part: part.save(folder / f"part-{next(saved):05d}.npz"))
        done.append(part)
    seconds = time.perf_counter() - started
    outputs = RankerOutputs.concat(done)
    outputs = outputs.select(np.argsort(outputs.users))
    outputs.save(folder / "outputs.npz")
    for part in folder.glob("part-*.npz"):
        part.unlink()
    summary = {"backbone": backbone, "arm": str(arm), "target": target, "users": len(outputs), "resumed": resumed,
               "device": torch_device(), "backend": cfg.ranking.backend, "dtype": cfg.ranking.resolved_dtype(torch_device()), "workers": cfg.ranking.workers,
               **pass_cost(usage, int(todo.sum()), seconds)}
    write_json(folder / "summary.json", summary)
    stage_obj.finish({"seconds": seconds})
    return outputs, summary


def rank_users(cfg: StudyConfig, arm: Arm, target: str, split: Split, candidates, models: ModelCache, *,
               on_chunk, progress: bool = True):
    """(`RankerOutputs`, backend usage) of `arm` on `candidates` of `target`'s users, chunk by
    chunk (`on_chunk` sees each): in this process, or over `ranking.workers` Ray workers
    (`recranker.stages.shard`)."""
    if cfg.ranking.workers > 1:
        from recranker.stages.shard import rank_sharded

        return rank_sharded(cfg, arm, target, candidates, on_chunk=on_chunk, progress=progress)
    hints = full_hint_models(cfg, split, progress=progress) if cfg.shows_hints(arm) else None
    backend = models.backend(cfg, arm)
    ranker = cfg.llm_ranker(backend, split, hints, arm, target)
    before = backend.usage.snapshot()
    outputs = ranker.rank(candidates, target, chunk=cfg.ranking.chunk_users, progress=progress, on_chunk=on_chunk)
    return outputs, backend.usage.since(before).as_dict()


def pass_cost(usage: dict, users: int, seconds: float) -> dict:
    """Time and tokens of an LLM pass over `users` users, in all and per user."""
    return {"users_this_run": users, "seconds": seconds, "usage": usage,
            "seconds_per_user": seconds / users if users else None,
            "tokens_per_user": {k: v / users for k, v in usage.items() if k.endswith("tokens")} if users else None}


class Pass(NamedTuple):
    """One LLM pass of a study: `arm` (`recranker.arms`) over `backbone`'s candidates of
    the users evaluated at `target` ("valid" or "test"); its stage is
    rank/<backbone>/<arm>/<target>/ (`rank_stage(cfg, *pass_)`)."""

    backbone: str
    arm: Arm
    target: str


def ranking_passes(cfg: StudyConfig) -> list[Pass]:
    """Every LLM pass of the study, in the order they run (one model loaded at a time):
    validation users only for the arm that has a validation pass, when the weights are tuned."""
    passes = []
    for arm in ranking_arms(cfg):
        for backbone in cfg.retrieval.models:
            targets = ["valid", "test"] if ARMS[arm].validated and cfg.ranking.tune_weights else ["test"]
            passes += [Pass(backbone, arm, target) for target in targets]
    return passes
