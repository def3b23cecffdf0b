"""The retrieval stage of each backbone: train it, evaluate its full ranking, write its top-m.

    retrieval/<model>/   model.pt, log.json, metrics.json, per_user_{valid,test}.csv,
                         candidates_{valid,test}.npz
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from recranker.artifacts import Stage, fingerprint, read_json, write_json
from recranker.config import StudyConfig
from recranker.metrics import per_user, single_target_gains, summarize
from recranker.retrieval import load_retriever, make_retriever
from recranker.split import TARGETS, Split
from recranker.stages.base import peak_rss_mib, write_csv, writes_run
from recranker.stages.split import prepare_split, split_stage
from recranker.types import Rankings

log = logging.getLogger(__name__)


def retrieval_stage(cfg: StudyConfig, model: str) -> Stage:
    """The retrieval stage of backbone `model` (inputs: its settings, m, cutoffs, the split)."""
    inputs = fingerprint(
        model, cfg.retrieval.model(model), cfg.retrieval.candidates, cfg.evaluation.ks, split_stage(cfg).inputs
    )
    return Stage(cfg.run_dir, f"retrieval/{model}", inputs=inputs)


@writes_run
def run_retrieval(
    cfg: StudyConfig, model: str, *, split: Split | None = None, progress: bool = True
) -> dict:
    """Train backbone `model`, evaluate it on the full ranking, write its candidates.

    `split` is `prepare_split(cfg)`'s result when the caller already has it. Returns the metrics
    summary (also in metrics.json).
    """
    if split is None:
        split = prepare_split(cfg)
    stage = retrieval_stage(cfg, model)
    if stage.done():
        log.info("retrieval/%s: done, reading %s", model, stage.path)
        return read_json(stage.path / "metrics.json")
    folder = stage.start()
    retriever = make_retriever(model, cfg.retrieval.model(model))
    started = time.perf_counter()
    retriever.fit(split, progress=progress)
    seconds = time.perf_counter() - started
    retriever.save(folder / "model.pt")
    write_json(folder / "log.json", retriever.log)
    summary = evaluate_retriever(retriever, split, cfg, folder)
    summary.update(model=model, train_seconds=seconds, peak_rss_mib=peak_rss_mib(),
                   stopped_by_budget=getattr(retriever, "stopped_by_budget", False))
    write_json(folder / "metrics.json", summary)
    stage.finish({"train_seconds": seconds})
    return summary


def evaluate_retriever(retriever, split: Split, cfg: StudyConfig, folder: Path) -> dict:
    """Full-ranking metrics at both stages and the top-m candidates, written into `folder`."""
    which = retrieval_measures(cfg)
    m = cfg.retrieval.candidates
    summary: dict = {"candidates": m}
    for stage_name in TARGETS:
        gains = single_target_gains(split.users, split.target_items(stage_name))
        ranked = retriever.top_m(split.users, max(max(cfg.evaluation.ks), m), stage_name)
        table = per_user(ranked, gains, which + [f"HR@{m}"])
        write_csv(folder / f"per_user_{stage_name}.csv", table)
        ranked.truncate(m).save(folder / f"candidates_{stage_name}.npz")
        means = summarize(table)
        summary[stage_name] = {k: v for k, v in means.items() if k in which}
        summary[stage_name][f"candidate_recall@{m}"] = means[f"HR@{m}"]
    # RecBole's protocol on a liked-only log excludes only liked training items: kept for comparison
    liked_only = retriever.evaluate(split, "test", ["HR@10", "NDCG@10"], exclude="liked")
    summary["test_exclude_liked_only"] = summarize(liked_only)
    return summary


def retrieval_measures(cfg: StudyConfig) -> list[str]:
    """The measures of a backbone's full ranking, in report order: HR@k then NDCG@k, k ascending."""
    return [f"{name}@{k}" for name in ("HR", "NDCG") for k in cfg.evaluation.ks]


def load_candidates(cfg: StudyConfig, model: str, target: str) -> Rankings:
    """The top-m candidates a finished retrieval stage wrote for `target`'s users."""
    folder = retrieval_stage(cfg, model).path
    return Rankings.load(folder / f"candidates_{target}.npz")


def load_backbone(cfg: StudyConfig, model: str, split: Split | None = None):
    """The trained backbone `model` of a finished retrieval stage (`split`: the run's split, when
    the caller already has it)."""
    split = prepare_split(cfg) if split is None else split
    return load_retriever(retrieval_stage(cfg, model).path / "model.pt", split)


def fitted_backbone(cfg: StudyConfig, model: str, split: Split, *, progress: bool = True):
    """Backbone `model` fitted on the whole training set: its retrieval stage, run if needed."""
    run_retrieval(cfg, model, split=split, progress=progress)
    return load_backbone(cfg, model, split)


def collect_metrics(cfg: StudyConfig) -> pd.DataFrame:
    """One row per finished retrieval stage of the run: test and valid metrics, time."""
    rows = []
    for model in sorted((cfg.run_dir / "retrieval").glob("*/metrics.json")):
        summary = read_json(model)
        row = {"model": summary["model"]}
        row.update({f"test {k}": v for k, v in summary["test"].items()})
        row["valid NDCG@10"] = summary["valid"].get("NDCG@10")
        row["train s"] = summary["train_seconds"]
        rows.append(row)
    return pd.DataFrame(rows)
