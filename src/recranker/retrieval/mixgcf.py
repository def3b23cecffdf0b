"""MixGCF (Huang et al., "MixGCF: An Improved Training Method for Graph Neural Network-based
Recommender Systems", KDD 2021) on LightGCN.

Instead of one uniform negative, each (user, positive) pair draws `negatives` uniform negatives and
synthesises a hard one from them. Positive mixing: at every layer l, each candidate's layer-l
embedding is mixed with the positive's, a e_pos + (1 - a) e_neg with a ~ U(0, 1) drawn per layer
and candidate. Hop mixing: at every layer, the mixed candidate with the largest inner product with
the user's layer-l embedding is chosen; the synthetic negative is the mean of the chosen layer
embeddings (LightGCN's pooling). The loss is BPR against it, with L2 on the batch's ego embeddings
(the candidates' averaged). Scoring is LightGCN's.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from recranker.retrieval.bpr import bpr_loss, l2_penalty
from recranker.retrieval.lightgcn import LightGCN, LightGCNConfig, Propagation


class MixGCFConfig(LightGCNConfig):
    """Settings of MixGCF (LightGCN's, plus the uniform negatives drawn per positive)."""

    RENAMED: ClassVar[dict[str, str]] = {"candidates": "renamed negatives (uniform negatives per positive)"}
    FINGERPRINT_NAMES: ClassVar[dict[str, str]] = {"negatives": "candidates"}

    negatives: int = Field(16, ge=1, description="uniform negatives drawn per positive, mixed into one hard negative")


def mixgcf_loss(module: Propagation, users: torch.Tensor, pos: torch.Tensor, negs: torch.Tensor, l2: float,
                generator: torch.Generator) -> torch.Tensor:
    """BPR of users (B,) and positives (B,) against the negative synthesised from negs (B, M)."""
    stack = module.layer_stack()  # (L, N, d)
    items = stack[:, module.n_users :]  # (L, n_items, d)
    u, p = stack[:, users], items[:, pos]  # (L, B, d) each
    alpha = torch.rand((stack.shape[0], *negs.shape, 1), generator=generator).to(stack.device)  # (L, B, M, 1)
    layers = stack.shape[0]
    with torch.no_grad():  # the choice is an argmax: only the chosen mix needs gradients
        # u . (a p + (1 - a) n) = a (u . p) + (1 - a) (u . n): no mixed (L, B, M, d) tensor is formed
        up = (u * p).sum(-1, keepdim=True)  # (L, B, 1)
        un = torch.einsum("lbd,lbmd->lbm", u, items[:, negs])  # (L, B, M)
        choice = (alpha[..., 0] * up + (1 - alpha[..., 0]) * un).argmax(-1)  # (L, B): hop mixing
    layer = torch.arange(layers, device=stack.device)[:, None]  # (L, 1)
    row = torch.arange(len(users), device=stack.device)[None, :]  # (1, B)
    chosen = negs[row, choice]  # (L, B): the item chosen at each layer
    a = alpha[layer, row, choice]  # (L, B, 1)
    hard = a * p + (1 - a) * items[layer, chosen]  # (L, B, d)
    user, positive, negative = u.mean(0), p.mean(0), hard.mean(0)  # (B, d) each
    loss = bpr_loss((user * positive).sum(-1), (user * negative).sum(-1))
    ego_items = module.ego[module.n_users :]
    return loss + l2 * l2_penalty(module.ego[users], ego_items[pos], ego_items[negs].mean(1))


class MixGCF(LightGCN):
    """LightGCN trained with BPR against negatives synthesised by positive and hop mixing."""

    name = "mixgcf"
    Config = MixGCFConfig
    config: MixGCFConfig

    def batch_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
        """BPR against the negative synthesised from `negatives` fresh uniform negatives per
        positive (the sampler's one negative is not used)."""
        m = self.config.negatives
        drawn = self.sampler.negatives(users.cpu().numpy().repeat(m), generator)  # (B * M,)
        negs = torch.from_numpy(drawn).view(len(users), m).to(self.device)  # (B, M)
        return mixgcf_loss(self.module, users, pos, negs, self.config.l2, generator)
