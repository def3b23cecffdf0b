import math

import numpy as np
import pytest
import pytrec_eval

from recranker.metrics import Measure, covered, measures, per_user, single_target_gains, summarize
from recranker.types import Rankings


def one(items, target, which):
    ranked = Rankings([7], [items], -np.arange(len(items), dtype=float)[None, :])
    return per_user(ranked, {7: {target: 1.0}}, which).iloc[0].to_dict()


def test_hand_computed_single_target() -> None:
    # target at rank 3 (index 2): HR@3 = 1, NDCG@3 = 1/log2(4) = 0.5; HR@2 = 0
    values = one([10, 11, 12, 13], 12, ["HR@2", "HR@3", "NDCG@3", "NDCG@2"])
    assert values == {"HR@2": 0.0, "HR@3": 1.0, "NDCG@3": 0.5, "NDCG@2": 0.0}


def test_target_first_gives_ones_and_missing_target_gives_zeros() -> None:
    assert one([5, 6, 7], 5, ["HR@1", "NDCG@1", "NDCG@3"]) == {"HR@1": 1.0, "NDCG@1": 1.0, "NDCG@3": 1.0}
    assert one([5, 6, 7], 99, ["HR@3", "NDCG@3"]) == {"HR@3": 0.0, "NDCG@3": 0.0}


def test_graded_ndcg_by_hand() -> None:
    ranked = Rankings([1], [[4, 3, 2]], [[3.0, 2.0, 1.0]])
    gains = {1: {3: 2.0, 2: 1.0, 9: 3.0}}  # item 9 is relevant but not listed
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    got = per_user(ranked, gains, ["NDCG@3", "HR@1"]).iloc[0]
    assert got["NDCG@3"] == pytest.approx(dcg / idcg)
    assert got["HR@1"] == 0.0


def test_measure_parsing() -> None:
    assert Measure.parse("ndcg@10") == Measure("NDCG", 10)
    assert str(Measure.parse("HR@3")) == "HR@3"
    assert measures("HR@1", "NDCG@5") == [Measure("HR", 1), Measure("NDCG", 5)]
    for bad in ["MAP@3", "NDCG@0", "NDCG", "HR@x"]:
        with pytest.raises(ValueError, match="unknown measure"):
            Measure.parse(bad)


def test_user_without_relevant_item_is_an_error() -> None:
    with pytest.raises(ValueError, match="no relevant item"):
        per_user(Rankings([3], [[1, 2]], [[1.0, 0.0]]), {}, ["HR@1"])


def test_covered_marks_users_whose_list_holds_the_target() -> None:
    ranked = Rankings([0, 1], [[1, 2], [3, 4]], [[1.0, 0.0], [1.0, 0.0]])
    assert covered(ranked, single_target_gains([0, 1], [2, 9])).tolist() == [True, False]


@pytest.mark.parametrize("graded", [False, True])
def test_agrees_with_trec_eval_on_random_rankings(graded: bool) -> None:
    rng = np.random.default_rng(3 + graded)
    n_users, n_items, depth = 50, 40, 20
    users = np.arange(n_users)
    items = np.stack([rng.permutation(n_items)[:depth] for _ in users])
    scores = np.sort(rng.random((n_users, depth)), axis=1)[:, ::-1] + np.arange(depth)[::-1] * 10
    ranked = Rankings(users, items, scores)
    gains = {}
    for u in users:
        rel = rng.choice(n_items, size=rng.integers(1, 4) if graded else 1, replace=False)
        gains[int(u)] = {int(i): float(rng.integers(1, 4)) if graded else 1.0 for i in rel}
    ks = [1, 3, 5, 10, 20]
    ours = per_user(ranked, gains, [f"{m}@{k}" for m in ("HR", "NDCG") for k in ks])

    qrel = {str(u): {str(i): int(g) for i, g in gains[u].items()} for u in gains}
    run = {str(u): {str(i): float(s) for i, s in zip(items[r], scores[r])} for r, u in enumerate(users)}
    cut = ",".join(map(str, ks))
    evaluator = pytrec_eval.RelevanceEvaluator(qrel, {f"ndcg_cut.{cut}", f"success.{cut}"})
    theirs = evaluator.evaluate(run)
    for u in users:
        for k in ks:
            assert ours.loc[u, f"NDCG@{k}"] == pytest.approx(theirs[str(u)][f"ndcg_cut_{k}"], abs=1e-9)
            assert ours.loc[u, f"HR@{k}"] == pytest.approx(theirs[str(u)][f"success_{k}"], abs=1e-9)
    assert summarize(ours)["NDCG@10"] == pytest.approx(np.mean([theirs[str(u)]["ndcg_cut_10"] for u in users]))
