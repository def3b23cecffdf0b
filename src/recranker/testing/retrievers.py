"""A public battery of tests every retriever should pass, as a pytest mixin.

    class TestLightGCN(RetrieverContract):
        def make(self, seed=0):
            return LightGCN(LightGCN.Config(seed=seed, epochs=20))

`learned = False` skips the check that the model beats popularity on the synthetic data.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from recranker.retrieval.base import Retriever
from recranker.split import Split, leave_one_out
from recranker.testing.synthetic import synthetic_dataset


@lru_cache(maxsize=1)
def synthetic_split() -> Split:
    """The synthetic dataset split leave-one-out (cached; treat as read-only)."""
    return leave_one_out(synthetic_dataset(n_users=80, n_items=60, per_user=20))


_FITTED: dict[type, Retriever] = {}


class RetrieverContract:
    """Mixin: subclass it in a test module and implement `make`."""

    learned = True

    def make(self, seed: int = 0) -> Retriever:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.fixture()
    def fitted(self) -> Retriever:
        """The model fitted once per test class on the synthetic split."""
        key = type(self)
        if key not in _FITTED:
            _FITTED[key] = self.make(seed=0).fit(synthetic_split(), progress=False)
        return _FITTED[key]

    def test_scores_have_one_column_per_item(self, fitted: Retriever) -> None:
        split = synthetic_split()
        scores = fitted.score_all(split.users[:5], "test")
        assert scores.shape == (5, split.n_items)
        assert np.isfinite(scores).all()

    def test_score_gathers_the_asked_items(self, fitted: Retriever) -> None:
        split = synthetic_split()
        users = split.users[:3]
        items = np.array([[0, 1, 2], [5, 4, 3], [7, 7, 8]])
        full = fitted.score_all(users, "valid")
        np.testing.assert_allclose(fitted.score(users, items, "valid"), np.take_along_axis(full, items, 1))

    def test_top_m_leaves_out_seen_items_and_is_sorted(self, fitted: Retriever) -> None:
        split = synthetic_split()
        ranked = fitted.top_m(split.users, 10, "test")
        seen = split.seen("test")
        for row in range(len(ranked)):
            user = ranked.users[row]
            assert not set(ranked.items[row]) & set(seen[user].indices)
            assert len(set(ranked.items[row])) == 10
            assert np.all(np.diff(ranked.scores[row]) <= 0)

    def test_training_is_seeded(self, fitted: Retriever) -> None:
        split = synthetic_split()
        again = self.make(seed=0).fit(split, progress=False)
        np.testing.assert_allclose(
            again.score_all(split.users[:4], "test"), fitted.score_all(split.users[:4], "test"), rtol=1e-5, atol=1e-6
        )

    def test_fitting_ignores_the_callers_grad_mode(self, fitted: Retriever) -> None:
        import torch

        split = synthetic_split()
        with torch.inference_mode():
            again = self.make(seed=0).fit(split, progress=False)
        assert torch.is_grad_enabled()  # the caller's mode is restored afterwards
        np.testing.assert_allclose(
            again.score_all(split.users[:4], "test"), fitted.score_all(split.users[:4], "test"), rtol=1e-5, atol=1e-6
        )

    def test_save_and_load_give_the_same_scores(self, fitted: Retriever, tmp_path) -> None:
        from recranker.retrieval import load_retriever

        split = synthetic_split()
        fitted.save(tmp_path / "model.pt")
        loaded = load_retriever(tmp_path / "model.pt", split)
        assert type(loaded) is type(fitted) and loaded.config == fitted.config
        np.testing.assert_allclose(loaded.score_all(split.users[:4], "test"), fitted.score_all(split.users[:4], "test"))

    def test_config_round_trips_and_rejects_unknown_keys(self, fitted: Retriever) -> None:
        config_type = type(fitted.config)
        assert config_type(**fitted.config.model_dump()) == fitted.config
        with pytest.raises(ValueError, match="not_a_setting"):
            config_type(not_a_setting=1)

    def test_beats_popularity_on_structured_data(self, fitted: Retriever) -> None:
        if not self.learned:
            pytest.skip("not a learned model")
        from recranker.retrieval.popularity import Popularity

        split = synthetic_split()
        pop = Popularity().fit(split, progress=False)
        ours = fitted.evaluate(split, "test", ["NDCG@10"]).mean().iloc[0]
        base = pop.evaluate(split, "test", ["NDCG@10"]).mean().iloc[0]
        assert ours > base + 0.05, (ours, base)

    def test_unknown_stage_is_refused(self, fitted: Retriever) -> None:
        with pytest.raises(ValueError, match="target"):
            fitted.top_m(synthetic_split().users[:2], 3, "train")  # type: ignore[arg-type]
