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

#: The control fails today: at this size (and at the CPU study's, and at 512 pointwise instructions
#: with a 5x learning rate) the tuned 135M model does not learn the planted rule, the easiest
#: shared-word variant included (BENCHMARKS.md "controls", "efficacy-control"). Strict: the day a
#: fix or a training budget makes it pass, this test fails until the mark is removed.
pytestmark = [pytest.mark.slow, pytest.mark.xfail(strict=True, reason="the 135M model does not learn the planted "
                                                   "rule at this training size (BENCHMARKS.md controls)")]

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
