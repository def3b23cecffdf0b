"""The user-sampling stage: who the instruction data is about (`recranker.sampling`).

    sample/   users.npz (sampled user codes, draw order), summary.json
"""

from __future__ import annotations

import logging

import numpy as np

from recranker.artifacts import Stage, atomic_write, fingerprint, read_json, write_json
from recranker.config import StudyConfig
from recranker.sampling import sample_summary, sample_users
from recranker.split import Split
from recranker.stages.base import writes_run
from recranker.stages.retrieval import fitted_backbone, retrieval_stage
from recranker.stages.split import prepare_split, split_stage

log = logging.getLogger(__name__)


#: the backbone whose user embeddings the clustering-based sampling clusters
EMBEDDING_MODEL = "lightgcn"


def sample_stage(cfg: StudyConfig) -> Stage:
    """The user-sampling stage (inputs: sampling settings, the split and, when clustering, LightGCN)."""
    upstream = split_stage(cfg).inputs
    if cfg.sampling.uses_embeddings:
        upstream = retrieval_stage(cfg, EMBEDDING_MODEL).inputs
    return Stage(cfg.run_dir, "sample", inputs=fingerprint(cfg.sampling, upstream))


@writes_run
def run_sample(cfg: StudyConfig, *, split: Split | None = None, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Sample the users of the instruction data (`recranker.sampling`), or read the finished
    sample; returns the user codes (draw order) and the summary."""
    split = prepare_split(cfg) if split is None else split
    stage = sample_stage(cfg)
    if stage.done():
        log.info("sample: done, reading %s", stage.path)
        with np.load(stage.path / "users.npz") as z:
            return z["users"], read_json(stage.path / "summary.json")
    embeddings = None
    if cfg.sampling.uses_embeddings:
        embeddings = fitted_backbone(cfg, EMBEDDING_MODEL, split, progress=progress).user_embeddings()
    users = sample_users(split, cfg.sampling, embeddings)
    folder = stage.start()
    with atomic_write(folder / "users.npz", binary=True) as fh:
        np.savez(fh, users=users)
    summary = {"strategy": cfg.sampling.strategy, **sample_summary(users, split)}
    write_json(folder / "summary.json", summary)
    stage.finish()
    return users, summary
