"""A small positive control on the real default model (slow: skipped unless SmolLM2-135M is
fetched): tuned on planted data whose preference is written in the titles, the model's expected
rating must rank each covered validation user's target far above the other candidates
(configs/control-positive.yaml is the whole-study version; BENCHMARKS.md "controls")."""

from __future__ import annotations

import pytest

from recranker import assets
from recranker.config import parse_config
from recranker.ranking.fusion import relevance, target_auc
from recranker.stages import ModelCache, prepare_split, run_retrieval, run_tune
from recranker.stages.population import evaluation_population
from recranker.stages.rank import run_rank

#: The control fails at this size. The 135M model learns the planted rule with more training: 512
#: pointwise instructions x 4 epochs reach a validation AUC of 0.93, and pointwise + pairwise 0.94 each
#: (BENCHMARKS.md "efficacy-control"). That takes 45-90 minutes of tuning on a 2-core CPU, too long
#: for a test. At 256 x 1, this test's size, it does not learn: the CPU study's budget and 512 x 1
#: did not either. Strict: the day a faster recipe makes this size pass, this test fails until the
#: mark is removed.
#: pointwise only, sized to take a few minutes on a 2-core CPU
CONTROL = {
    "name": "planted-pointwise",
    "data": {"format": "planted", "planted": {"users": 240, "shelves": 12, "items_per_shelf": 48, "per_user": 30}},
    "retrieval": {"candidates": 10, "models": {"lightgcn": {"positives": "interacted"}}},
    "evaluation": {"ks": [3]},
    "sampling": {"strategy": "uniform", "instructions": 256},
    "prompts": {"tasks": ["pointwise"], "folds": 3, "candidate_source": "retrieved"},
    "tuning": {"epochs": 1, "learning_rate": 1e-3},
    "ranking": {"arms": [], "bootstrap": 1, "generate": False, "valid_users": 120},
}


def test_tuned_pointwise_reads_the_planted_titles(tmp_path) -> None:
    if not assets.is_fetched("smollm2-135m"):
        pytest.skip("SmolLM2-135M not fetched (recranker fetch smollm2-135m)")
    cfg = parse_config({**CONTROL, "runs_dir": str(tmp_path)})
    split = prepare_split(cfg)
    run_retrieval(cfg, "lightgcn", split=split, progress=False)
    run_tune(cfg, progress=False)
    out, _ = run_rank(cfg, "lightgcn", "tuned", "valid", split=split, models=ModelCache(), progress=False)
    _, gains = evaluation_population(cfg, split, "lightgcn", "valid")
    auc = target_auc(out.point, relevance(out, gains))
    assert len(auc) >= 30
    assert auc.mean() > 0.7, f"tuned pointwise AUC {auc.mean():.3f} on {len(auc)} covered validation users"
