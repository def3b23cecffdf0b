import numpy as np
import pytest

from recranker.ranking.config import RankingConfig, UtilityConstants
from recranker.ranking.hybrid import hybrid, listwise_bonus, logit_ranks, simplex, tune_weights, utilities
from recranker.ranking.llm import RankerOutputs, pair_columns

C = UtilityConstants()


def outputs(point, pair_yes, list_rank, list_logprob, status=0):
    """One user, m = 4 candidates (items 10..13), adjacent pairs, one listwise pass."""
    m = 4
    return RankerOutputs(
        users=np.array([0]), items=np.array([[10, 11, 12, 13]]), point=np.array([point], float),
        pairs=pair_columns(m, "adjacent"), pair_yes=np.array([pair_yes], float),
        list_shown=np.array([[[3, 2, 1, 0]]]), list_rank=np.array([[list_rank]]),
        list_status=np.array([[status]]), list_logprob=np.array([[list_logprob]], float))


def test_utilities_follow_the_official_constants_by_hand() -> None:
    out = outputs(point=[3.0, 4.5, 1.0, 2.0],
                  # pairs (0,1), (1,2), (2,3): P(Yes) for "a over b" and for "b over a"
                  pair_yes=[[0.2, 0.9],   # both orders: 1 beats 0 -> +0.5 to column 1
                            [0.7, 0.6],   # disagree -> +0.25 to columns 1 and 2
                            [0.6, 0.3]],  # both orders: 2 beats 3 -> +0.5 to column 2
                  list_rank=[2, 0, 3, 1], list_logprob=[-1.0, -3.0, -0.5, -2.0])
    u = utilities(out, C, 5)
    retrieval = np.array([0.20, 0.15, 0.10, 0.05])  # 0.05 * (4 - r)
    np.testing.assert_allclose(u["pointwise"][0], retrieval + [3.0, 4.5, 1.0, 2.0])
    np.testing.assert_allclose(u["pairwise"][0], retrieval + [0.0, 0.75, 0.75, 0.0])
    # generated positions 2, 0, 3, 1 -> 0.025 * (5 - p)
    np.testing.assert_allclose(u["listwise"][0], retrieval + [0.075, 0.125, 0.05, 0.1])
    # by logits the order is column 2, 0, 3, 1 -> positions 1, 3, 0, 2
    np.testing.assert_allclose(u["listwise_logits"][0], retrieval + [0.1, 0.05, 0.125, 0.075])
    mixed = hybrid(u, (0.5, 0.25, 0.25), "generate")
    np.testing.assert_allclose(mixed, 0.5 * u["pointwise"] + 0.25 * u["pairwise"] + 0.25 * u["listwise"])
    assert "bootstrapping" not in u  # one pass only


def test_bootstrapping_averages_the_passes_and_ungenerated_answers_have_no_generated_system() -> None:
    out = outputs([3, 3, 3, 3], [[0.5, 0.5]] * 3, [0, 1, 2, 3], [-1, -2, -3, -4], status=-1)
    out.list_rank = np.array([[[0, 1, 2, 3], [3, 2, 1, 0]]])
    out.list_logprob = np.array([[[-1, -2, -3, -4], [-4, -3, -2, -1]]], float)
    out.list_status = np.array([[-1, -1]])
    u = utilities(out, C, 5)
    assert "listwise" not in u and "bootstrapping" in u
    expected = (listwise_bonus(np.array([0, 1, 2, 3]), C, 5) + listwise_bonus(np.array([3, 2, 1, 0]), C, 5)) / 2
    np.testing.assert_allclose(u["bootstrapping"][0], [0.20, 0.15, 0.10, 0.05] + expected)


def test_logit_ranks_and_simplex() -> None:
    assert logit_ranks(np.array([-2.0, -1.0, -3.0])).tolist() == [1, 0, 2]
    grid = simplex(0.1)
    assert len(grid) == 66 and all(abs(sum(w) - 1) < 1e-9 for w in grid)
    assert (1.0, 0.0, 0.0) in grid and (0.0, 0.0, 1.0) in grid


def test_weight_tuning_finds_the_task_that_ranks_the_target_first() -> None:
    # the target is column 3; only the listwise answer puts it first
    out = outputs(point=[5, 4, 3, 1], pair_yes=[[0.9, 0.1]] * 3, list_rank=[1, 2, 3, 0], list_logprob=[-1, -2, -3, -4])
    gains = {0: {13: 1.0}}
    weights, value, grid = tune_weights(utilities(out, C, 5), out, gains, "NDCG@3", 0.5, "generate")
    assert weights[2] > 0 and value > 0 and len(grid) == 6
    assert max(g["NDCG@3"] for g in grid) == value


def test_config_rejects_weights_off_the_simplex() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        RankingConfig(weights=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="generate: true"):
        RankingConfig(listwise="generate", generate=False)
