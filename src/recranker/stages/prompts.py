"""The instruction-data stage and the hint models it needs (cross-fitted per fold).

    hints/<model>/   fold<f>.pt: the hint model fitted without training fold f
    prompts/         <task>.jsonl (chat messages + metadata), stats.json
"""

from __future__ import annotations

import logging
import time

from recranker import assets
from recranker.artifacts import Stage, fingerprint, read_json, write_json
from recranker.candidates import TrainingPools
from recranker.config import StudyConfig
from recranker.hints import HintModels, fit_fold_models, hint_quality
from recranker.prompts.export import length_summary, token_lengths, write_jsonl
from recranker.prompts.instructions import InstructionBuilder
from recranker.prompts.templates import template_path
from recranker.retrieval import load_retriever
from recranker.split import Split
from recranker.stages.base import model_signature, writes_run
from recranker.stages.retrieval import fitted_backbone, retrieval_stage
from recranker.stages.sample import run_sample, sample_stage
from recranker.stages.split import prepare_split, split_stage

log = logging.getLogger(__name__)


def hints_stage(cfg: StudyConfig) -> Stage:
    """The cross-fitting stage: one hint model per fold (inputs: which models and their settings,
    the folds and their seed, the split; not the switches that only decide whether the fold
    models are used, so toggling those never refits them)."""
    hints, prompts = cfg.prompts.hints, cfg.prompts
    models = {name: cfg.retrieval.model(name) for name in (hints.rating_model, hints.ranking_model)}
    return Stage(cfg.run_dir, "hints", inputs=fingerprint(
        [hints.rating_model, hints.ranking_model], prompts.folds, prompts.seed, models, split_stage(cfg).inputs))


def prepare_hints(cfg: StudyConfig, split: Split, pools: TrainingPools, *, progress: bool = True) -> HintModels | None:
    """The hint models: full ones from the retrieval stages and, when cross-fitting, one per fold
    (fitted once, then read back). None when no prompt needs them (no hints, shuffled
    candidates, none retrieved)."""
    settings = cfg.prompts.hints
    if not settings.enabled and cfg.prompts.shift_positions and cfg.prompts.retrieved_fraction == 0:
        return None
    names = (settings.rating_model, settings.ranking_model)
    full = full_hint_models(cfg, split, progress=progress)
    if not settings.cross_fit and cfg.prompts.retrieved_fraction == 0:
        return full  # (retrieved candidates come from the fold models, whatever the hints' source)
    stage = hints_stage(cfg)
    per_fold = {}
    if stage.done():
        log.info("hints: done, reading %s", stage.path)
        for name in dict.fromkeys(names):
            per_fold[name] = [load_retriever(stage.path / name / f"fold{f}.pt", split.holding_out(pools.fold_rows(f)))
                              for f in range(pools.k)]
    else:
        folder = stage.start()
        started = time.perf_counter()
        for name in dict.fromkeys(names):
            per_fold[name] = fit_fold_models(split, pools, name, cfg.retrieval.model(name), progress=progress)
            for f, model in enumerate(per_fold[name]):
                model.save(folder / name / f"fold{f}.pt")
        stage.finish({"seconds": time.perf_counter() - started})
    return HintModels(full.rating, full.ranking, per_fold[names[0]], per_fold[names[1]])


def full_hint_models(cfg: StudyConfig, split: Split, *, progress: bool = True) -> HintModels:
    """The hint models fitted on the whole training set (their retrieval stages, run if needed):
    the hints of inference prompts."""
    names = (cfg.prompts.hints.rating_model, cfg.prompts.hints.ranking_model)
    return HintModels(*[fitted_backbone(cfg, name, split, progress=progress) for name in names])


#: version of the instruction records' layout: a change rebuilds earlier runs' prompts (3: one history for
#: every task; 2: listwise
#: records carry the shuffled second view)
PROMPTS_FORMAT = 3


def template_texts(cfg: StudyConfig, tasks) -> list[str]:
    """The text of each template file `tasks` use (packaged or the configured folder), so that an
    edited template reruns the stages that render prompts."""
    domain = cfg.prompts.resolved_domain(cfg.data.format)
    paths = [template_path(task, domain, cfg.prompts.templates_dir) for task in tasks]
    return [p.read_text(encoding="utf-8") if p.exists() else str(p) for p in paths]


def prompts_stage(cfg: StudyConfig) -> Stage:
    """The instruction-data stage (inputs: prompt settings and templates, the sample, the hint models)."""
    hints = cfg.prompts.hints
    upstream = [retrieval_stage(cfg, name).inputs for name in (hints.rating_model, hints.ranking_model)]
    return Stage(cfg.run_dir, "prompts", inputs=fingerprint(
        cfg.prompts, template_texts(cfg, cfg.prompts.tasks), sample_stage(cfg).inputs, hints_stage(cfg).inputs,
        upstream, PROMPTS_FORMAT, model_signature(cfg.prompts.tokenizer)))


@writes_run
def run_prompts(cfg: StudyConfig, *, split: Split | None = None, progress: bool = True) -> dict:
    """Build the instruction data of every configured task (`recranker.prompts`) into
    prompts/<task>.jsonl, or read the finished stage's statistics."""
    stage = prompts_stage(cfg)
    if stage.done():
        log.info("prompts: done, reading %s", stage.path)
        return read_json(stage.path / "stats.json")
    split = prepare_split(cfg) if split is None else split
    pcfg = cfg.prompts  # tokenizer and templates first: bad ones fail before any model is fitted
    tokenizer = assets.load_tokenizer(pcfg.tokenizer) if pcfg.tokenizer else None
    renderer = cfg.renderer(split.dataset, tokenizer, pcfg.tasks)
    users, _ = run_sample(cfg, split=split, progress=progress)
    pools = TrainingPools(split, pcfg.folds, pcfg.seed)
    hints = prepare_hints(cfg, split, pools, progress=progress)
    builder = InstructionBuilder(pools, renderer, hints, pcfg)
    folder = stage.start()
    stats: dict = {"tokenizer": pcfg.tokenizer, "exact_tokens": tokenizer is not None, "tasks": {}}
    for task in pcfg.tasks:
        started = time.perf_counter()
        records = builder.build(task, users, progress=progress)
        write_jsonl(folder / f"{task}.jsonl", records)
        seconds = time.perf_counter() - started
        retrieved = sum(r["candidates"] == "retrieved" for r in records)
        stats["tasks"][task] = {**length_summary(*token_lengths(records, tokenizer)), "seconds": seconds,
                                "retrieved": retrieved / max(len(records), 1), "hint_quality": hint_quality(records)}
    write_json(folder / "stats.json", stats)
    stage.finish()
    return stats
