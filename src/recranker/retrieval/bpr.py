"""BPR-MF: matrix factorization trained with the BPR pairwise loss (Rendle et al., UAI 2009).

Positives are the liked training interactions (or every training interaction, with
`positives: interacted`); each is paired with one item drawn uniformly at random that is not
one of the user's positives. The pair sampler and the loss live here and are
reused by LightGCN.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from recranker.retrieval.base import RetrieverConfig, TorchRetriever, optimize
from recranker.split import Positives, Split, Target


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(pos - neg) over the batch.

    | input | shape | meaning                         |
    |-------|-------|---------------------------------|
    | pos   | (B,)  | scores of the positive items    |
    | neg   | (B,)  | scores of the sampled negatives |

    Reference: Rendle et al., "BPR: Bayesian Personalized Ranking from Implicit Feedback", 2009.

    >>> round(float(bpr_loss(torch.tensor([0.0]), torch.tensor([0.0]))), 4)  # log 2
    0.6931
    """
    if pos.shape != neg.shape:
        raise ValueError(f"pos and neg must have the same shape, got {tuple(pos.shape)} and {tuple(neg.shape)}")
    return -F.logsigmoid(pos - neg).mean()


def l2_penalty(*embeddings: torch.Tensor) -> torch.Tensor:
    """Half the squared L2 norm of the given batch embeddings, divided by the batch size."""
    return sum(e.pow(2).sum() for e in embeddings) / (2 * len(embeddings[0]))


class PairSampler:
    """Uniform (user, positive, negative) triples over the training positives of a split (the liked
    interactions, or every one: `Split.train_positives`).

    A negative that turns out to be one of the user's positives is redrawn (up to `retries` times;
    the rare leftovers are kept, which costs nothing measurable).
    """

    def __init__(self, split: Split, retries: int = 3, positives: Positives = "liked") -> None:
        pairs = split.train_positives(positives)
        self.users = pairs["user"].to_numpy(np.int64)  # (N,)
        self.items = pairs["item"].to_numpy(np.int64)  # (N,)
        self.n_items = split.n_items
        self.retries = retries
        self._keys = np.unique(self.users * self.n_items + self.items)  # sorted (user, item) codes

    def __len__(self) -> int:
        return len(self.users)

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair is a liked training interaction."""
        keys = users * self.n_items + items
        if not len(self._keys):
            return np.zeros(keys.shape, dtype=bool)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[at] == keys

    def negatives(self, users: np.ndarray, generator: torch.Generator) -> np.ndarray:
        """One uniformly drawn item per user, avoiding the user's liked training items."""
        neg = torch.randint(self.n_items, (len(users),), generator=generator).numpy()
        for _ in range(self.retries):
            bad = np.flatnonzero(self.is_positive(users, neg))
            if not len(bad):
                break
            neg[bad] = torch.randint(self.n_items, (len(bad),), generator=generator).numpy()
        return neg

    def epoch(
        self, batch_size: int, generator: torch.Generator, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches of (users, positives, negatives), each (B,) int64, covering every positive once."""
        order = torch.randperm(len(self), generator=generator).numpy()
        users, pos = self.users[order], self.items[order]
        neg = self.negatives(users, generator)
        for start in range(0, len(order), batch_size):
            part = slice(start, start + batch_size)
            yield (
                torch.from_numpy(users[part]).to(device),  # (B,)
                torch.from_numpy(pos[part]).to(device),  # (B,)
                torch.from_numpy(neg[part]).to(device),  # (B,)
            )


class BPRConfig(RetrieverConfig):
    """Settings of BPR-MF (defaults tuned on the default ML-100K split)."""

    dim: int = Field(128, ge=1, description="embedding size of users and items")
    lr: float = Field(5e-3, gt=0, description="Adam learning rate")
    l2: float = Field(1e-2, ge=0, description="weight of the L2 penalty on the batch embeddings")
    batch_size: int = Field(2048, ge=1, description="(user, positive, negative) triples per step")
    init_std: float = Field(0.1, gt=0, description="standard deviation of the normal initial embeddings")
    eval_every: int = Field(2, ge=1, description="epochs between validation evaluations")


class MF(nn.Module):
    """User and item embeddings; a score is their dot product."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float, generator: torch.Generator) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        for table in (self.user, self.item):
            nn.init.normal_(table.weight, std=init_std, generator=generator)

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, l2: float) -> torch.Tensor:
        """BPR loss plus L2 on the batch embeddings."""
        u, i, j = self.user(users), self.item(pos), self.item(neg)  # (B, d) each
        loss = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        return loss + l2 * l2_penalty(u, i, j)


class BPRMF(TorchRetriever):
    """Matrix factorization trained with BPR on liked interactions (uniform negatives, Adam)."""

    name = "bpr"
    Config = BPRConfig
    config: BPRConfig
    module: MF

    def build(self, split: Split, generator: torch.Generator) -> torch.optim.Optimizer:
        """Make the embeddings and the pair sampler; return Adam."""
        cfg = self.config
        self.module = MF(split.n_users, split.n_items, cfg.dim, cfg.init_std, generator)
        self.sampler = PairSampler(split, positives=cfg.positives)
        return torch.optim.Adam(self.module.parameters(), lr=cfg.lr)

    def train_epoch(self, split: Split, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """One pass over the liked training interactions; returns the mean batch loss."""
        batches = self.sampler.epoch(self.config.batch_size, generator, self.device)
        return optimize(optimizer, (self.module(u, i, j, self.config.l2) for u, i, j in batches))

    @torch.no_grad()
    def score_all(self, users: np.ndarray, target: Target = "test") -> np.ndarray:
        """Dot products of the users' embeddings with every item's (target is ignored)."""
        u = self.module.user(torch.tensor(users, dtype=torch.long, device=self.device))  # (U, d)
        return (u @ self.module.item.weight.T).float().cpu().numpy()  # (U, I)
