"""`Reranker`: a finished run's tuned LLM ranking any user's candidates through the study's prompt path."""

import numpy as np
import pytest

from recranker.errors import RecrankerError
from recranker.serve import RankRequest, Reranker, RequestError

HISTORY = [("i1", 5), ("i2", 4), {"item": "i12", "rating": 1}, {"title": "A film nobody catalogued", "rating": 4}]
CANDIDATES = ["i3", "i4", "i15", "i25", "i35"]


class Recording:
    """Wraps a backend, keeping every request text it is asked."""

    def __init__(self, backend):
        self.inner, self.texts = backend, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, requests, token_ids):
        self.texts += [r.text for r in requests]
        return self.inner.run(requests, token_ids)


@pytest.mark.parametrize("system", ["hybrid", "tuned hybrid"])
def test_rank_returns_the_candidates_by_descending_hybrid_score(reranker, system) -> None:
    served = Reranker(reranker.cfg, reranker.ranker, reranker.systems, system)
    result = served.rank(HISTORY, CANDIDATES)
    assert sorted(i.item for i in result.items) == sorted(CANDIDATES) and result.system == system
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)
    assert result.tasks == ["pointwise", "pairwise", "listwise"] and not result.hints
    retrieval = reranker.cfg.ranking.constants.retrieval * (len(CANDIDATES) - np.arange(len(CANDIDATES)))
    for item in result.items:  # the weighted sum of the task utilities, + a0 U_retrieval (the hybrid)
        u, rank = item.utilities, CANDIDATES.index(item.item)
        weighted = np.dot(result.weights, [u["pointwise"], u["pairwise"], u["listwise"]])
        assert item.score == pytest.approx(weighted + result.a0 * retrieval[rank])
    assert [i.item for i in served.rank(HISTORY, CANDIDATES, k=2).items] == [i.item for i in result.items[:2]]


def test_the_same_request_gets_the_same_answer_alone_or_batched(reranker) -> None:
    alone = reranker.rank(HISTORY, CANDIDATES)
    other = RankRequest([("i30", 5)], ["i31", "i32", "i33", "i34", "i36"], user="u3")
    batched = reranker.rank_many([RankRequest(HISTORY, CANDIDATES), other])[0]
    assert [i.item for i in batched.items] == [i.item for i in alone.items]
    np.testing.assert_allclose([i.score for i in batched.items], [i.score for i in alone.items], atol=1e-4)


def test_backbone_scores_give_the_backbone_order(reranker) -> None:
    by_order = reranker.rank(HISTORY, CANDIDATES[::-1], tasks=["pointwise"])
    by_scores = reranker.rank(HISTORY, CANDIDATES, scores=[1, 2, 3, 4, 5], tasks=["pointwise"])
    assert [i.item for i in by_scores.items] == [i.item for i in by_order.items]
    assert by_order.tasks == ["pointwise"] and set(by_order.items[0].utilities) == {"pointwise"}


def test_a_known_user_gets_hints_and_an_unknown_one_none(reranker) -> None:
    recording = Recording(reranker.backend)
    spy = Reranker(reranker.cfg, reranker.ranker, reranker.systems)
    spy.ranker.backend = recording
    try:
        known = spy.rank(HISTORY, CANDIDATES, user="u3", tasks=["listwise"])
        assert known.hints and "Hint:" in recording.texts[-1]
        unknown = spy.rank(HISTORY, CANDIDATES, user="nobody", tasks=["listwise"])
        assert not unknown.hints and "Hint:" not in recording.texts[-1]
        assert "A film nobody catalogued" in recording.texts[-1]  # the free title is shown
    finally:
        spy.ranker.backend = recording.inner


@pytest.mark.parametrize("kwargs, message", [
    (dict(candidates=[]), "candidates: give a non-empty list"),
    (dict(candidates=["i3", "nope"]), r"candidates\[1\]: unknown item id 'nope'"),
    (dict(candidates=["i3", "i3"]), "appears twice"),
    (dict(candidates=[f"i{k}" for k in range(27)]), "27 items, at most 26"),
    (dict(history="i1"), "history: give a list"),
    (dict(history=[("i1", "five")]), r"history\[0\].rating: give a number"),
    (dict(history=[{"item": "i1", "title": "x", "rating": 3}]), r"history\[0\]: give exactly one"),
    (dict(history=[("zzz", 3)]), r"history\[0\].item: unknown item id 'zzz'"),
    (dict(history=[("i1", 3)] * 201), "201 entries, at most 200"),
    (dict(scores=[1.0]), "1 scores for 5 candidates"),
    (dict(scores=[1, 2, 3, 4, float("nan")]), "finite numbers"),
    (dict(tasks=["ranking"]), "not among the run's tuned tasks"),
    (dict(k=0), "k: must be a positive"),
    (dict(history=[{"title": "x\ud800", "rating": 4}]), r"history\[0\].title: not valid Unicode"),
    (dict(history=[("i1", np.bool_(True))]), r"history\[0\].rating: give a number"),
    (dict(history=[np.array(5)]), r"history\[0\]: give \[item id, rating\]"),
    (dict(scores=np.array([1.0, 2.0, 3.0, 4.0, np.inf])), "finite numbers"),
])
def test_bad_requests_get_one_message_naming_the_field(reranker, kwargs, message) -> None:
    request = {"history": HISTORY, "candidates": CANDIDATES, **kwargs}
    with pytest.raises(RequestError, match=message):
        reranker.rank(**request)


def test_load_needs_a_finished_run(tmp_path) -> None:
    with pytest.raises(RecrankerError, match="one finished tune stage"):
        Reranker.load(tmp_path)


def test_numpy_values_are_taken_as_the_numbers_they_hold(reranker) -> None:
    plain = reranker.rank([("i1", 5), ("i2", 4)], CANDIDATES, scores=[5.0, 4.0, 3.0, 2.0, 1.0], k=3)
    numbered = reranker.rank([(np.str_("i1"), np.int64(5)), {"item": "i2", "rating": np.float32(4)}],
                             np.array(CANDIDATES), scores=np.arange(5, 0, -1, dtype=np.float32), k=np.int64(3))
    assert [(i.item, i.score) for i in numbered.items] == [(i.item, i.score) for i in plain.items]
    rows = reranker.rank(np.array([["i1", 5], ["i2", 4]], dtype=object), CANDIDATES, k=3)  # a (n, 2) array
    assert [i.item for i in rows.items] == [i.item for i in reranker.rank([("i1", 5), ("i2", 4)], CANDIDATES, k=3).items]


@pytest.mark.parametrize("remove, missing", [("adapter", "adapter/ (LoRA) or model/ (full fine-tuning) missing"),
                                             ("adapter/adapter_model.safetensors", "adapter/adapter_model.safetensors"),
                                             ("base_model.txt", "base_model.txt missing")])
def test_a_run_missing_its_tuned_model_is_one_message_naming_the_folder(tiny_run, tmp_path, remove, missing) -> None:
    import shutil

    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(tiny_run, copy)
    target = copy / "tune" / "main" / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(RecrankerError) as err:
        Reranker.load(copy)
    assert str(err.value).startswith(f"{copy / 'tune' / 'main'}: no tuned model: ") and missing in str(err.value)
