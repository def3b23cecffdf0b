"""LightGCN (He et al., SIGIR 2020): linear propagation of ID embeddings over the user-item graph.

The graph holds one edge per liked training interaction and is normalised symmetrically,
A_hat = D^-1/2 A D^-1/2. Each training step propagates all embeddings K times with one sparse
matmul per layer, averages the K+1 layers and takes a BPR step with L2 on the batch's ego
(layer-0) embeddings. Scoring uses the propagated embeddings, cached until the next step.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from pydantic import Field
from torch import nn

from recranker.retrieval.base import RetrieverConfig, TorchRetriever, optimize
from recranker.retrieval.bpr import PairSampler, bpr_loss, l2_penalty
from recranker.split import Split, Target


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph of (user, item) edges, as a sparse CSR tensor
    (CSR products are about 4x faster than COO's on CPU).

    Nodes are the users (0..n_users-1) then the items (n_users..n_users+n_items-1); repeated
    edges count once and isolated nodes get an empty row.
    """
    n = n_users + n_items
    upper = sp.coo_matrix((np.ones(len(users)), (users, items + n_users)), shape=(n, n)).tocsr()
    upper.data[:] = 1.0  # repeated edges count once
    adj = (upper + upper.T).tocoo()
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = degree[degree > 0] ** -0.5
    values = inv_sqrt[adj.row] * adj.data * inv_sqrt[adj.col]
    index = torch.from_numpy(np.vstack([adj.row, adj.col]).astype(np.int64))  # (2, nnz)
    coo = torch.sparse_coo_tensor(index, torch.from_numpy(values).float(), (n, n), check_invariants=True)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products are all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return coo.coalesce().to_sparse_csr()


class SymmetricProduct(torch.autograd.Function):
    """A @ X for a symmetric sparse A (no gradient): the gradient of X is A^T @ G = A @ G, one more
    product with the same CSR matrix instead of torch's transposed COO or CSR backward (2.5x faster
    per LightGCN step on ML-1M)."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.adjacency, grad)


class LightGCNConfig(RetrieverConfig):
    """Settings of LightGCN (defaults tuned on the default ML-100K split)."""

    dim: int = Field(64, ge=1, description="embedding size of users and items")
    layers: int = Field(3, ge=0, description="propagation layers K (0 is plain BPR-MF)")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate")
    l2: float = Field(1e-4, ge=0, description="weight of the L2 penalty on the batch's ego embeddings")
    batch_size: int = Field(4096, ge=1, description="(user, positive, negative) triples per step")
    init_std: float = Field(0.1, gt=0, description="standard deviation of the normal initial embeddings")
    epochs: int = Field(400, ge=0, description="most epochs to train")
    eval_every: int = Field(5, ge=1, description="epochs between validation evaluations")


class Propagation(nn.Module):
    """Ego embeddings of all users and items and their K-layer mean over a fixed graph."""

    def __init__(self, adjacency: torch.Tensor, n_users: int, n_items: int, config: LightGCNConfig,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.n_users, self.layers = n_users, config.layers
        self.ego = nn.Parameter(torch.empty(n_users + n_items, config.dim))  # (N, d), users first
        nn.init.normal_(self.ego, std=config.init_std, generator=generator)
        self.register_buffer("adjacency", adjacency, persistent=False)  # (N, N) sparse

    def propagate(self, adjacency: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of the K+1 layer embeddings over `adjacency` (default: the training graph), split
        into users (n_users, d) and items (n_items, d)."""
        mean = self.layer_stack(adjacency).sum(0) / (self.layers + 1)  # (N, d)
        return mean[: self.n_users], mean[self.n_users :]

    def layer_stack(self, adjacency: torch.Tensor | None = None) -> torch.Tensor:
        """(K+1, N, d): the embeddings of every layer over `adjacency` (default: the training
        graph), layer 0 first."""
        adjacency = self.adjacency if adjacency is None else adjacency
        layers = [self.ego]
        for _ in range(self.layers):
            layers.append(SymmetricProduct.apply(adjacency, layers[-1]))  # (N, d)
        return torch.stack(layers)

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, l2: float) -> torch.Tensor:
        """BPR loss of the propagated embeddings plus L2 on the batch's ego embeddings."""
        user_all, item_all = self.propagate()  # (n_users, d), (n_items, d)
        u, i, j = user_all[users], item_all[pos], item_all[neg]  # (B, d) each
        loss = bpr_loss((u * i).sum(-1), (u * j).sum(-1))
        ego_items = self.ego[self.n_users :]
        return loss + l2 * l2_penalty(self.ego[users], ego_items[pos], ego_items[neg])


class LightGCN(TorchRetriever):
    """LightGCN on the liked training interactions, trained with BPR and uniform negatives."""

    name = "lightgcn"
    Config = LightGCNConfig
    config: LightGCNConfig
    module: Propagation

    def build(self, split: Split, generator: torch.Generator) -> torch.optim.Optimizer:
        """Make the normalised graph (once), the embeddings and the pair sampler; return Adam."""
        self.sampler = PairSampler(split, positives=self.config.positives)
        adjacency = normalized_adjacency(self.sampler.users, self.sampler.items, split.n_users, split.n_items)
        self.module = Propagation(adjacency, split.n_users, split.n_items, self.config, generator)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        return torch.optim.Adam(self.module.parameters(), lr=self.config.lr)

    def fit(self, split: Split, *, progress: bool = True) -> "LightGCN":
        """Train with early stopping (see `TorchRetriever.fit`); the best epoch's weights are kept."""
        super().fit(split, progress=progress)
        self._cache = None  # the cache may hold a later epoch than the restored best one
        return self

    def train_epoch(self, split: Split, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """One pass over the liked training interactions, one propagation and `batch_loss` per batch."""
        self._cache = None
        batches = self.sampler.epoch(self.config.batch_size, generator, self.device)
        return optimize(optimizer, (self.batch_loss(u, i, j, generator) for u, i, j in batches))

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
        """The loss of a batch of (user, positive, negative) triples: BPR plus L2 (`Propagation.forward`)."""
        return self.module(users, pos, neg, self.config.l2)

    @torch.no_grad()
    def propagated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user (n_users, d) and item (n_items, d) embeddings, cached until the next step."""
        if self._cache is None:
            self._cache = self.module.propagate()
        return self._cache

    def user_embeddings(self) -> np.ndarray:
        """(n_users, d) float32 final user embeddings (e.g. for clustering users)."""
        return self.propagated()[0].float().cpu().numpy()

    def score_all(self, users: np.ndarray, target: Target = "test") -> np.ndarray:
        """Dot products of the users' final embeddings with every item's (target is ignored)."""
        user_all, item_all = self.propagated()
        u = user_all[torch.tensor(users, dtype=torch.long, device=user_all.device)]  # (U, d)
        return (u @ item_all.T).float().cpu().numpy()  # (U, I)

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self._cache = None
