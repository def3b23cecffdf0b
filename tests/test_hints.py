import numpy as np
import pytest

from recranker.hints import HintModels, fit_fold_models, hint_quality
from recranker.retrieval import make_retriever


def test_each_fold_model_never_saw_its_fold_and_saw_the_rest(split, pools) -> None:
    models = fit_fold_models(split, pools, "pop", make_retriever("pop").config, progress=False)
    train = split.train
    keys = lambda frame: set(zip(frame["user"].tolist(), frame["item"].tolist()))  # noqa: E731
    for fold, model in enumerate(models):
        seen = keys(model.split.train)
        held = keys(pools.fold_rows(fold))
        assert not seen & held
        assert seen == keys(train) - held


def test_hints_route_each_row_to_its_fold_model(split, hint_models) -> None:
    users = split.users[:6]
    items = np.tile(np.arange(4), (6, 1))
    folds = np.array([0, 1, 2, 0, 1, 2])
    got = hint_models.scores(users, items, folds)
    for row, fold in enumerate(folds):
        expected = hint_models.ranking_folds[fold].score(users[row : row + 1], items[row : row + 1], "valid")
        np.testing.assert_allclose(got[row], expected[0], rtol=1e-5)
    np.testing.assert_allclose(hint_models.scores(users, items), hint_models.ranking.score(users, items, "valid"), rtol=1e-5)


def test_the_rating_model_must_predict_ratings(split) -> None:
    pop = make_retriever("pop").fit(split, progress=False)
    with pytest.raises(TypeError, match="must predict ratings"):
        HintModels(pop, pop)


def test_hint_quality_on_hand_computed_records() -> None:
    point = [{"task": "pointwise", "labels": [4.0], "hint": {"value": 3.0}},
             {"task": "pointwise", "labels": [2.0], "hint": {"value": 4.0}}]
    assert hint_quality(point) == pytest.approx({"hinted": 2.0, "rmse": np.sqrt(2.5), "mae": 1.5})
    pair = [{"task": "pairwise", "permutation": [1, 0], "hint": {"value": 1}},
            {"task": "pairwise", "permutation": [0, 1], "hint": {"value": 1}}]
    assert hint_quality(pair)["accuracy"] == 0.5
    # gains in hint order: 0, 4 -> DCG = 4 / log2(3); ideal = 4
    lists = [{"task": "listwise", "labels": [4.0, 0.0], "hint": {"value": [1, 0]}}]
    assert hint_quality(lists)["ndcg"] == pytest.approx(1 / np.log2(3))
    assert hint_quality([{"task": "pointwise", "hint": None}]) == {}
