"""The stages of a study, each writing its artefacts into the run directory (DESIGN section 9).

    split/                 dataset.json, interactions.npz, split.npz, stats.json
    retrieval/<model>/     model.pt, log.json, metrics.json, per_user_{valid,test}.csv,
                           candidates_{valid,test}.npz

A stage is skipped when its marker says it finished with the same inputs (config section and the
fingerprints of the stages it reads); otherwise it runs again and overwrites its folder's files.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

import pandas as pd

from recranker import assets
from recranker.artifacts import Stage, atomic_write, fingerprint, read_json, write_json
from recranker.config import DataConfig, StudyConfig
from recranker.data.dataset import Dataset, Feedback
from recranker.metrics import per_user, single_target_gains, summarize
from recranker.retrieval import load_retriever, make_retriever
from recranker.split import STAGES, Split, check_leakage, leave_one_out
from recranker.types import Rankings

log = logging.getLogger(__name__)


def data_path(cfg: DataConfig) -> Path:
    """The configured path, or the fetched default copy of ML-100K."""
    if cfg.path is not None:
        return Path(cfg.path)
    if cfg.format != "ml-100k":
        raise assets.FetchError(f"data.path is required for format {cfg.format!r}")
    return assets.require("ml-100k")


def load_data(cfg: DataConfig) -> Dataset:
    """Load the configured dataset."""
    from recranker.data.registry import load_dataset

    options: dict[str, object] = {
        "feedback": Feedback(liked_min=cfg.liked_min, disliked_max=cfg.disliked_max)
    }
    if cfg.format == "csv":
        options.update(items_path=cfg.items_path, implicit=cfg.implicit)
    if cfg.format == "amazon":
        options["meta_path"] = cfg.meta_path
    if cfg.format == "recbole" and cfg.implicit:
        options["implicit"] = True
    return load_dataset(cfg.format, data_path(cfg), **options)


def _input_signature(path: Path) -> list[tuple[str, int, int]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def split_stage(cfg: StudyConfig) -> Stage:
    """The split stage of `cfg`'s run (its inputs: data config and the data files)."""
    signature = _input_signature(data_path(cfg.data))
    return Stage(cfg.run_dir, "split", inputs=fingerprint(cfg.data, signature))


def prepare_split(cfg: StudyConfig) -> Split:
    """Load, split and leakage-check the data, or read the finished split."""
    stage = split_stage(cfg)
    if stage.done():
        log.info("split: done, reading %s", stage.path)
        return Split.load(str(stage.path))
    dataset = load_data(cfg.data)
    split = leave_one_out(dataset, source=str(data_path(cfg.data)))
    check_leakage(split)
    folder = stage.start()
    split.save(str(folder))
    write_json(folder / "stats.json", split_stats(split))
    stage.finish({"users": len(split.users)})
    return split


def split_stats(split: Split) -> dict[str, float | int | str]:
    """The dataset's statistics with the split's user and training-interaction counts."""
    return {**split.dataset.stats(), "split_users": len(split.users), "train_interactions": len(split.train)}


def retrieval_stage(cfg: StudyConfig, model: str) -> Stage:
    """The retrieval stage of backbone `model` (inputs: its settings, m, cutoffs, the split)."""
    inputs = fingerprint(
        model, cfg.retrieval.model(model), cfg.retrieval.candidates, cfg.evaluation.ks, split_stage(cfg).inputs
    )
    return Stage(cfg.run_dir, f"retrieval/{model}", inputs=inputs)


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
    summary.update(model=model, train_seconds=seconds, peak_rss_mib=peak_rss_mib())
    write_json(folder / "metrics.json", summary)
    stage.finish({"train_seconds": seconds})
    return summary


def evaluate_retriever(retriever, split: Split, cfg: StudyConfig, folder: Path) -> dict:
    """Full-ranking metrics at both stages and the top-m candidates, written into `folder`."""
    ks = cfg.evaluation.ks
    which = [f"{name}@{k}" for name in ("HR", "NDCG") for k in ks]
    m = cfg.retrieval.candidates
    summary: dict = {"candidates": m}
    for stage_name in STAGES:
        gains = single_target_gains(split.users, split.target_items(stage_name))
        ranked = retriever.top_m(split.users, max(max(ks), m), stage_name)
        table = per_user(ranked, gains, which + [f"HR@{m}"])
        _write_csv(folder / f"per_user_{stage_name}.csv", table)
        ranked.truncate(m).save(folder / f"candidates_{stage_name}.npz")
        means = summarize(table)
        summary[stage_name] = {k: v for k, v in means.items() if k in which}
        summary[stage_name][f"candidate_recall@{m}"] = means[f"HR@{m}"]
    # RecBole's protocol on a liked-only log excludes only liked training items: kept for comparison
    liked_only = retriever.evaluate(split, "test", ["HR@10", "NDCG@10"], exclude="liked")
    summary["test_exclude_liked_only"] = summarize(liked_only)
    return summary


def load_candidates(cfg: StudyConfig, model: str, stage: str) -> Rankings:
    """The top-m candidates a finished retrieval stage wrote."""
    folder = retrieval_stage(cfg, model).path
    return Rankings.load(folder / f"candidates_{stage}.npz")


def load_backbone(cfg: StudyConfig, model: str):
    """The trained backbone `model` of a finished retrieval stage."""
    split = prepare_split(cfg)
    return load_retriever(retrieval_stage(cfg, model).path / "model.pt", split)


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


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_write(path) as fh:
        table.to_csv(fh, float_format="%.6g")
