import numpy as np
import pandas as pd
import pytest

from recranker.data.dataset import Dataset
from recranker.retrieval.biased_mf import BiasedMF
from recranker.split import leave_one_out
from recranker.testing.retrievers import RetrieverContract, synthetic_split


def small(seed: int = 0, **overrides) -> BiasedMF:
    settings = dict(seed=seed, dim=8, lr=0.02, l2=1e-2, batch_size=256, epochs=30, eval_every=5, patience=3)
    return BiasedMF(BiasedMF.Config(**{**settings, **overrides}))


class TestBiasedMF(RetrieverContract):
    def make(self, seed: int = 0) -> BiasedMF:
        return small(seed)


def planted(n_users: int = 60, n_items: int = 40, rank: int = 2, observed: float = 0.6, seed: int = 0):
    """A split of a noise-free rank-`rank` rating matrix (with biases), and the full matrix."""
    rng = np.random.default_rng(seed)
    truth = (
        3.4
        + rng.normal(0, 0.3, (n_users, 1))
        + rng.normal(0, 0.3, (1, n_items))
        + rng.normal(0, 0.7, (n_users, rank)) @ rng.normal(0, 0.7, (rank, n_items))
    ).clip(1, 5)
    users, items = np.nonzero(rng.random((n_users, n_items)) < observed)
    log = pd.DataFrame(
        {
            "user": [f"u{u:03d}" for u in users],
            "item": [f"i{i:03d}" for i in items],
            "rating": [f"{r:.4f}" for r in truth[users, items]],
            "timestamp": rng.permutation(len(users)).astype(str),
            "line": np.arange(2, len(users) + 2),
        }
    )
    return leave_one_out(Dataset.from_frames("planted", log, None, log_path="<planted>")), truth


def test_recovers_the_ratings_of_a_planted_low_rank_matrix() -> None:
    split, truth = planted()
    assert truth.shape == (split.n_users, split.n_items)
    model = small(dim=2, l2=1e-3, lr=0.03, batch_size=128, epochs=80, eval_every=80).fit(split, progress=False)
    users, items = np.meshgrid(np.arange(split.n_users), np.arange(split.n_items), indexing="ij")
    unseen = np.zeros_like(truth, dtype=bool)
    unseen[split.users] = True  # users without targets are left out of the split and its training set
    unseen[split.train["user"], split.train["item"]] = False
    predicted = model.predict_ratings(users[unseen], items[unseen])
    rmse = np.sqrt(np.mean((predicted - truth[unseen]) ** 2))
    baseline = np.sqrt(np.mean((split.train["rating"].mean() - truth[unseen]) ** 2))
    assert rmse < 0.3 * baseline, (rmse, baseline)
    assert model.valid_rmse < 0.5 * baseline


def test_predict_ratings_are_clipped_and_shaped_like_items() -> None:
    split = synthetic_split()
    model = small(epochs=5, eval_every=5).fit(split, progress=False)
    users = split.users[:3]
    items = np.arange(12).reshape(3, 4)
    grid = model.predict_ratings(users, items)
    assert grid.shape == (3, 4) and grid.min() >= 1.0 and grid.max() <= 5.0
    np.testing.assert_allclose(grid[:, 0], model.predict_ratings(users, items[:, 0]))
    with pytest.raises(ValueError, match="items must be"):
        model.predict_ratings(users, np.arange(4))
