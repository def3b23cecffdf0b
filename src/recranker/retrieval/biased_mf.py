"""Biased MF (Koren et al., IEEE Computer 2009): explicit ratings as mu + b_u + b_i + p_u . q_i.

Trained with squared error on every training rating (liked or not), so it can give pointwise
rating hints (`predict_ratings`). Its validation RMSE is measured on the held-out ratings of the
validation window (each user's interactions from the validation target up to the test target),
and early stopping watches that RMSE rather than validation NDCG (see `BiasedMF.monitor`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from pydantic import Field
from torch import nn

from recranker.retrieval.base import RetrieverConfig, TorchRetriever, minibatches, optimize
from recranker.retrieval.bpr import l2_penalty
from recranker.split import Split, Target


RATING_RANGE = (1.0, 5.0)


def validation_window(split: Split):
    """Ratings from each user's validation target (included) up to the test target (excluded)."""
    known = split.known
    start = split.targets["valid_time"].reindex(known["user"]).to_numpy()
    return known[known["timestamp"].to_numpy() >= start].reset_index(drop=True)


class BiasedMFConfig(RetrieverConfig):
    """Settings of biased MF (defaults tuned on the default ML-100K split)."""

    dim: int = Field(32, ge=1, description="embedding size of users and items")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate")
    l2: float = Field(0.2, ge=0, description="weight of the L2 penalty on the batch's embeddings and biases")
    batch_size: int = Field(1024, ge=1, description="ratings per step")
    init_std: float = Field(0.1, gt=0, description="standard deviation of the normal initial embeddings")
    epochs: int = Field(100, ge=0, description="most epochs to train")
    eval_every: int = Field(1, ge=1, description="epochs between validation evaluations")


class RatingMF(nn.Module):
    """Global mean, user and item biases, and user and item factors."""

    def __init__(self, n_users: int, n_items: int, mean: float, config: BiasedMFConfig,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.user, self.item = nn.Embedding(n_users, config.dim), nn.Embedding(n_items, config.dim)
        self.user_bias, self.item_bias = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        for table in (self.user, self.item):
            nn.init.normal_(table.weight, std=config.init_std, generator=generator)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)
        self.register_buffer("mean", torch.tensor(float(mean)))

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B,) unclipped predicted ratings of the (users[b], items[b]) pairs."""
        dot = (self.user(users) * self.item(items)).sum(-1)  # (B,)
        return self.mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + dot

    def predict_all(self, users: torch.Tensor) -> torch.Tensor:
        """(U, n_items) unclipped predicted ratings of every item."""
        dot = self.user(users) @ self.item.weight.T  # (U, I)
        return self.mean + self.user_bias(users) + self.item_bias.weight.T + dot  # (U, I)

    def forward(self, users: torch.Tensor, items: torch.Tensor, ratings: torch.Tensor, l2: float) -> torch.Tensor:
        """Mean squared error plus L2 on the batch's factors and biases."""
        error = (self.predict(users, items) - ratings).pow(2).mean()
        params = (self.user(users), self.item(items), self.user_bias(users), self.item_bias(items))  # (B, .)
        return error + l2 * l2_penalty(*params)


class BiasedMF(TorchRetriever):
    """Explicit-rating MF trained with MSE on all training ratings; ranks by predicted rating."""

    name = "biased_mf"
    Config = BiasedMFConfig
    config: BiasedMFConfig
    module: RatingMF

    def build(self, split: Split, generator: torch.Generator) -> torch.optim.Optimizer:
        """Make the model around the training mean rating; return Adam."""
        train = split.train
        self._users = torch.tensor(train["user"].to_numpy(np.int64))  # (N,)
        self._items = torch.tensor(train["item"].to_numpy(np.int64))  # (N,)
        self._ratings = torch.tensor(train["rating"].to_numpy(np.float32))  # (N,)
        mean = float(self._ratings.mean()) if len(train) else float(np.mean(RATING_RANGE))
        self.module = RatingMF(split.n_users, split.n_items, mean, self.config, generator)
        return torch.optim.Adam(self.module.parameters(), lr=self.config.lr)

    #: early stopping watches validation RMSE, not NDCG@10: ranking by predicted rating peaks
    #: within a few epochs, long before the ratings are fitted (on ML-100K NDCG@10 is best at
    #: epoch 1-4 while RMSE keeps falling for 15-30 epochs), and the model is meant for rating hints
    monitor = "valid_rmse"
    monitor_higher = False

    def validate(self, split: Split) -> dict[str, float]:
        """Validation RMSE (watched) and NDCG@10 (logged)."""
        return {"valid_rmse": self.rmse(split), "valid_ndcg@10": self.validation_ndcg(split)}

    @property
    def valid_rmse(self) -> float:
        """Validation RMSE of the current weights."""
        return self.rmse(self._require_split())

    def train_epoch(self, split: Split, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """One pass over all training ratings in random order; returns the mean batch loss."""
        columns = (self._users, self._items, self._ratings)

        def losses() -> Iterator[torch.Tensor]:
            for batch in minibatches(len(self._ratings), self.config.batch_size, generator):
                users, items, ratings = (t[batch].to(self.device) for t in columns)
                yield self.module(users, items, ratings, self.config.l2)

        return optimize(optimizer, losses())

    @torch.no_grad()
    def predict_ratings(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted ratings, clipped to [1, 5], of items (n,) or (n, m) for users (n,)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if items.ndim not in (1, 2) or len(items) != len(users):
            raise ValueError(f"items must be (n,) or (n, m) with n={len(users)}, got {items.shape}")
        pairs = np.broadcast_to(users.reshape(-1, *([1] * (items.ndim - 1))), items.shape)
        to = lambda a: torch.tensor(a.ravel(), dtype=torch.long, device=self.device)  # noqa: E731
        rating = self.module.predict(to(pairs), to(items)).clamp(*RATING_RANGE)  # (n * m,)
        return rating.float().cpu().numpy().reshape(items.shape)

    def rmse(self, split: Split) -> float:
        """Root mean squared error of the clipped predictions on the validation window's ratings."""
        window = validation_window(split)
        if not len(window):
            return float("nan")
        predicted = self.predict_ratings(window["user"].to_numpy(), window["item"].to_numpy())
        return float(np.sqrt(np.mean((predicted - window["rating"].to_numpy()) ** 2)))

    @torch.no_grad()
    def score_all(self, users: np.ndarray, target: Target = "test") -> np.ndarray:
        """Unclipped predicted ratings of every item (unclipped so ties at 5 keep their order)."""
        users_t = torch.tensor(users, dtype=torch.long, device=self.device)  # (U,)
        return self.module.predict_all(users_t).float().cpu().numpy()  # (U, I)
