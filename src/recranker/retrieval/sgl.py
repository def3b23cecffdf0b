"""SGL (Wu et al., "Self-supervised Graph Learning for Recommendation", SIGIR 2021), SGL-ED.

LightGCN plus a self-supervised task on two views of the graph. Each epoch draws two views by
edge dropout (each liked training edge dropped with probability `drop_ratio`, each view normalised
again as D^-1/2 A D^-1/2). Each batch adds to LightGCN's BPR loss the InfoNCE loss between the two
views' propagated embeddings of the batch's distinct users, and of its distinct positive items
(cosine similarity over temperature `ssl_tau`; every other user, or item, of the second view is a
negative, as in the authors' code), weighted by `ssl_weight`. Scoring uses the full graph, as LightGCN does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from recranker.retrieval.lightgcn import LightGCN, LightGCNConfig, normalized_adjacency
from recranker.split import Split


class SGLConfig(LightGCNConfig):
    """Settings of SGL-ED (LightGCN's, plus the views and the contrastive loss). `l2` and
    `ssl_weight` were chosen on the validation users of the default ML-100K split (BENCHMARKS.md,
    "backbones"): with the paper's ssl_weight 0.1 and LightGCN's L2 SGL peaked early and overfit."""

    l2: float = Field(1e-3, ge=0, description="weight of the L2 penalty on the batch's ego embeddings (LightGCN: 1e-4)")
    drop_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="share of edges each view drops (per epoch)")
    ssl_weight: float = Field(0.02, ge=0.0, description="weight of the InfoNCE loss")
    ssl_tau: float = Field(0.2, gt=0.0, description="temperature of the InfoNCE loss")


def info_nce(first: torch.Tensor, second: torch.Tensor, rows: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE of the nodes `rows` (n,): row r of the first view (N, d) against row r of the second
    (N, d), every other row of the second view being a negative; cosine similarities over `tau`,
    averaged over `rows`."""
    logits = F.normalize(first[rows], dim=1) @ F.normalize(second, dim=1).T / tau  # (n, N)
    return F.cross_entropy(logits, rows)


class SGL(LightGCN):
    """LightGCN trained with BPR plus InfoNCE between two edge-dropout views of the graph."""

    name = "sgl"
    Config = SGLConfig
    config: SGLConfig

    def train_epoch(self, split: Split, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """One pass over the liked training interactions with this epoch's two views."""
        self._views = [self.dropped_view(split, generator) for _ in range(2)] if self.config.ssl_weight > 0 else []
        return super().train_epoch(split, optimizer, generator)

    def dropped_view(self, split: Split, generator: torch.Generator) -> torch.Tensor:
        """The normalised adjacency of the training graph less a random `drop_ratio` of its edges."""
        keep = (torch.rand(len(self.sampler.users), generator=generator) >= self.config.drop_ratio).numpy()
        view = normalized_adjacency(self.sampler.users[keep], self.sampler.items[keep], split.n_users, split.n_items)
        return view.to(self.device)

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
        """BPR + L2 (LightGCN's) + ssl_weight x (InfoNCE of the users + InfoNCE of the positive items)."""
        loss = super().batch_loss(users, pos, neg, generator)
        if not self._views:
            return loss
        (u1, i1), (u2, i2) = (self.module.propagate(view) for view in self._views)
        tau = self.config.ssl_tau
        ssl = info_nce(u1, u2, torch.unique(users), tau) + info_nce(i1, i2, torch.unique(pos), tau)
        return loss + self.config.ssl_weight * ssl
