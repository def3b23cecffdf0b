import numpy as np
import pytest

from recranker.metrics import per_user
from recranker.ranking.config import UtilityConstants
from recranker.ranking.fusion import (FEATURES, LearnedFusion, bootstrap_ci, calibrate, candidate_features,
                                      first_pick_counts, pairwise_wins, position_prior, position_test, relevance,
                                      target_auc, tune_fusion)
from recranker.ranking.hybrid import utilities
from recranker.ranking.llm import RankerOutputs, pair_columns
from recranker.types import Rankings

C = UtilityConstants()


def population(n=400, m=6, seed=0, point_signal=0.0, position_bias=3.0, evidence=1.0):
    """`n` users with m candidates (backbone order); the target is column t[u], drawn so the
    backbone's top is right more often than chance. Expected ratings carry `point_signal` about the
    target; the listwise logits carry `evidence` about it plus a bias towards shown position A."""
    rng = np.random.default_rng(seed)
    target = np.minimum(rng.geometric(0.35, size=n) - 1, m - 1)
    is_target = np.arange(m)[None, :] == target[:, None]
    shown = np.stack([rng.permutation(m) for _ in range(n)])[:, None, :]  # (n, 1, m) column at each position
    position = np.argsort(shown, axis=-1)
    logprob = evidence * is_target[:, None, :] + position_bias * (position == 0) + rng.normal(0, 0.3, (n, 1, m))
    point = 3 + point_signal * is_target + rng.normal(0, 0.5, (n, m))
    pairs = pair_columns(m, "adjacent")
    out = RankerOutputs(users=np.arange(n), items=np.arange(n * m).reshape(n, m) + 100, point=point, pairs=pairs,
                        pair_yes=np.full((n, len(pairs), 2), 0.5), list_shown=shown,
                        list_rank=np.tile(np.arange(m), (n, 1, 1)), list_status=np.full((n, 1), -1),
                        list_logprob=logprob)
    gains = {int(u): {int(out.items[u, target[u]]): 1.0} for u in range(n)}
    return out, gains


def test_calibration_removes_a_position_prior_and_keeps_the_evidence() -> None:
    out, gains = population()
    raw = position_test(first_pick_counts(out))
    assert raw["shares"][0] > 0.9 and raw["chi2_p"] < 1e-6  # the bias dominates
    prior = position_prior(out)
    assert prior[0] > prior[1:].max() + 2  # the prior found where the bias is
    calibrated = calibrate(out, prior)
    test = position_test(first_pick_counts(calibrated))
    assert test["max_gap_points"] < 5 and test["chi2_p"] > 0.05
    grades = relevance(out, gains)
    assert target_auc(calibrated.list_logprob[:, 0], grades).mean() > target_auc(out.list_logprob[:, 0], grades).mean()
    assert target_auc(calibrated.list_logprob[:, 0], grades).mean() > 0.7


def test_position_test_by_hand() -> None:
    test = position_test(np.array([30, 10, 10, 10]))
    assert test["shares"] == [0.5, 0.1667, 0.1667, 0.1667] and test["max_gap_points"] == pytest.approx(25.0)
    assert test["chi2_p"] < 0.001 and position_test(np.array([25, 25, 25, 25]))["chi2_p"] == pytest.approx(1.0)
    assert position_test(np.zeros(3)) == {"answers": 0}


def test_target_auc_and_bootstrap_by_hand() -> None:
    grades = np.array([[0, 1, 0, 0], [1, 0, 0, 0]])
    scores = np.array([[0.0, 2.0, 3.0, 1.0], [5.0, 5.0, 1.0, 0.0]])
    np.testing.assert_allclose(target_auc(scores, grades), [2 / 3, (0.5 + 1 + 1) / 3])
    assert target_auc(scores, np.zeros((2, 4))).size == 0  # no relevant candidate: no pair
    lo, hi = bootstrap_ci(np.r_[np.ones(50), np.zeros(50)])
    assert lo < 0.5 < hi and hi - lo < 0.25
    assert bootstrap_ci(np.full(20, 0.3)) == pytest.approx((0.3, 0.3))


def test_the_tuned_hybrid_falls_back_to_the_backbone_when_the_llm_knows_nothing() -> None:
    out, gains = population(point_signal=0.0, position_bias=0.0, evidence=0.0)
    systems = utilities(out, C, 3, "logits")
    weights, a0, value = tune_fusion(systems, out, gains, "NDCG@3", 0.5, "logits", C, [0.0, 1.0, 1000.0])
    backbone = per_user(Rankings(out.users, out.items, np.zeros(out.items.shape)), gains, ["NDCG@3"]).iloc[:, 0].mean()
    assert a0 == 1000.0 and value == pytest.approx(backbone)


def test_the_tuned_hybrid_uses_the_llm_when_it_knows_better() -> None:
    out, gains = population(point_signal=3.0, position_bias=0.0, evidence=0.0)
    weights, a0, value = tune_fusion(utilities(out, C, 3, "logits"), out, gains, "NDCG@3", 0.5, "logits", C,
                                     [0.0, 1.0, 1000.0])
    backbone = per_user(Rankings(out.users, out.items, np.zeros(out.items.shape)), gains, ["NDCG@3"]).iloc[:, 0].mean()
    assert a0 < 1000.0 and weights[0] > 0 and value > backbone + 0.1


def test_the_learned_fusion_weighs_the_informative_feature_and_ranks_the_target_up() -> None:
    train, train_gains = population(seed=1, point_signal=0.7, position_bias=0.0, evidence=0.0)
    test, test_gains = population(seed=2, point_signal=0.7, position_bias=0.0, evidence=0.0)
    backbone = -np.tile(np.arange(6.0), (len(train), 1))
    model = LearnedFusion.fit(candidate_features(train, backbone), relevance(train, train_gains))
    coef = dict(zip(FEATURES, model.coef))
    assert coef["expected rating"] > 0.2 and coef["backbone rank"] < 0  # a lower rank number is better
    assert abs(coef["listwise log-prob"]) < coef["expected rating"]
    fused = model.scores(candidate_features(test, backbone))
    grades = relevance(test, test_gains)
    assert target_auc(fused, grades).mean() > max(target_auc(test.point, grades).mean(),
                                                  target_auc(backbone, grades).mean())
    assert model.pairs == len(train) * 5


def test_pairwise_wins_are_soft_and_averaged_over_the_asked_pairs() -> None:
    out, _ = population(n=1, m=3)
    out.pair_yes[0] = [[0.8, 0.4], [0.5, np.nan]]  # (0,1): 0 wins 0.7; (1,2): second order missing -> not counted
    np.testing.assert_allclose(pairwise_wins(out)[0], [0.7, 0.3, 0.5])


def test_listwise_stats_count_first_picks_as_the_diagnostics_do() -> None:
    from recranker.stages.results import listwise_stats

    out, _ = population(n=50, m=4)
    assert listwise_stats(out)["top1_position_logits"] == first_pick_counts(out).tolist()
    assert sum(listwise_stats(out)["top1_position_logits"]) == 50
    out.list_logprob[:] = np.nan  # no listwise prompt answered by logits: nothing counted, not position A
    assert listwise_stats(out)["top1_position_logits"] == [0, 0, 0, 0]


def test_the_learned_fusions_cross_fitted_value_is_out_of_sample() -> None:
    """On users whose expected rating carries the target, the cross-fitted fusion (each user scored
    by a fit without its fold) beats the backbone as the in-sample fit does; on users whose
    features carry nothing, its AUC stays near 0.5 where the in-sample fit reads noise as signal."""
    out, gains = population(n=200, seed=3, point_signal=0.7, position_bias=0.0, evidence=0.0)
    backbone = -np.tile(np.arange(6.0), (len(out), 1))
    x, grades = candidate_features(out, backbone), relevance(out, gains)
    crossed = LearnedFusion.cross_fitted(x, grades, c=1.0)
    assert target_auc(crossed, grades).mean() > target_auc(backbone, grades).mean() + 0.05
    rng = np.random.default_rng(4)
    noise = rng.normal(size=(40, 6, len(FEATURES)))
    blind = (rng.random((40, 6)) < 0.2).astype(float)
    in_sample = LearnedFusion.fit(noise, blind, c=100.0).scores(noise)
    assert target_auc(LearnedFusion.cross_fitted(noise, blind, c=100.0), blind).mean() < target_auc(in_sample, blind).mean() - 0.05
