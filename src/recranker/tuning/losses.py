"""ALRO's ranking objectives for listwise answers (Chao et al., 2024, sections 4.3-4.4).

Both losses read the language model at the answer positions of a listwise example: position t is
the step whose next token is the t-th identifier of the answer (teacher-forced), and candidate i is
the identifier token of the i-th candidate as shown in the prompt. They are plain `nn.Module`s over
tensors, so they can be tested without a model; `recranker.tuning.trainer` feeds them.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check(name: str, tensor: torch.Tensor, dims: int) -> None:
    if tensor.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions, got shape {tuple(tensor.shape)}")


class SoftLambdaLoss(nn.Module):
    r"""Soft lambda loss: LambdaLoss over candidate pairs with a differentiable position per
    candidate (ALRO eq. 2-4, after Wang et al., 2018, "The LambdaLoss Framework").

    | input          | shape     | meaning                                                              |
    |----------------|-----------|----------------------------------------------------------------------|
    | `probs`        | (B, T, M) | y[t, i]: probability (softmax over the whole vocabulary) that answer |
    |                |           | position t emits candidate i's identifier                            |
    | `grades`       | (B, M)    | relevance grade of candidate i (the user's rating; 0: not interacted)|
    | `mask`         | (B, M)    | candidate i exists (examples may have fewer than M candidates)       |
    | `position_mask`| (B, T)    | position t exists (examples may list fewer than T identifiers)       |

    Returns the mean over examples that have at least one pair of different grades (0 if none).

    **Which reading of equation 4.** The paper writes s_i = max_j softmax_k(gamma y[j, k])_i * j,
    which mixes a max with a soft-argmax and normalises over the wrong axis to give a position.
    Implemented here (the reading of DESIGN section 6): for each candidate i, a softmax with
    temperature gamma over the output positions, w[i, t] = softmax_t(gamma * y[t, i]), turned into
    an expected position p_i = sum_t t * w[i, t]; the score is s_i = -p_i (earlier is better).
    When the answer lists only the top T of M candidates, an extra position T + 1 ("not listed")
    gets y[T+1, i] = 1 - sum_t y[t, i] (clamped to [0, 1]), so a candidate the model never emits is
    placed after the listed ones instead of in the middle of them.

    **The pair weights** follow NDCG-Loss2++ of Wang et al. with the ranks of the ideal order
    (candidates sorted by grade; eq. 2 indexes pairs by the target permutation tau):
    L = sum over pairs with g_i > g_j of delta_ij |G_i - G_j| log2(1 + exp(-sigma (s_i - s_j))),
    delta_ij = |1/D(|r_i - r_j|) - 1/D(|r_i - r_j| + 1)|, D(n) = log2(1 + n),
    G_i = (2^g_i - 1) / maxDCG.

    >>> loss = SoftLambdaLoss(gamma=2.0, sigma=1.0)
    >>> probs = torch.tensor([[[0.9, 0.05], [0.05, 0.9]]])  # position 1 says A, position 2 says B
    >>> loss(probs, torch.tensor([[5.0, 1.0]]), torch.ones(1, 2, dtype=torch.bool)).item() > 0
    True
    """

    def __init__(self, gamma: float = 2.0, sigma: float = 1.0) -> None:
        super().__init__()
        self.gamma, self.sigma = gamma, sigma

    def expected_positions(self, probs: torch.Tensor, mask: torch.Tensor,
                           position_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M) expected 1-based position of each candidate (see the class docstring)."""
        _check("probs", probs, 3)
        batch, positions, _ = probs.shape
        if position_mask is None:
            position_mask = torch.ones(batch, positions, dtype=torch.bool, device=probs.device)
        y = probs.masked_fill(~position_mask[:, :, None], 0.0)  # (B, T, M)
        listed = position_mask.sum(1)  # (B,)
        rest = (1.0 - y.sum(1)).clamp(0.0, 1.0)  # (B, M) mass not on any listed position
        y = torch.cat([y, rest[:, None, :]], dim=1)  # (B, T+1, M)
        # the extra position exists only where fewer positions are listed than there are candidates
        allowed = torch.cat([position_mask, (listed < mask.sum(1))[:, None]], dim=1)  # (B, T+1)
        logits = (self.gamma * y).masked_fill(~allowed[:, :, None], float("-inf"))
        weights = logits.softmax(dim=1)  # (B, T+1, M), over positions
        # 1-based rank of each slot: listed positions 1..T, then "not listed" after the last listed
        slot = torch.arange(1, positions + 2, device=probs.device, dtype=probs.dtype).expand(batch, -1).clone()
        slot[:, -1] = listed.to(probs.dtype) + 1
        return (weights * slot[:, :, None]).sum(1)  # (B, M)

    def forward(self, probs: torch.Tensor, grades: torch.Tensor, mask: torch.Tensor,
                position_mask: torch.Tensor | None = None) -> torch.Tensor:
        _check("probs", probs, 3)
        _check("grades", grades, 2)
        if probs.shape[0] != grades.shape[0] or probs.shape[2] != grades.shape[1] or mask.shape != grades.shape:
            raise ValueError(f"probs {tuple(probs.shape)}, grades {tuple(grades.shape)} and mask "
                             f"{tuple(mask.shape)} disagree: expected (B, T, M), (B, M), (B, M)")
        mask = mask.bool()
        scores = -self.expected_positions(probs, mask, position_mask)  # (B, M)
        grades = grades.to(probs.dtype).masked_fill(~mask, 0.0)
        gains = torch.pow(2.0, grades) - 1.0  # (B, M)
        # ranks in the ideal order (missing candidates last)
        order = torch.argsort((-grades).masked_fill(~mask, float("inf")), dim=1, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(1, order, torch.arange(1, grades.shape[1] + 1, device=grades.device).expand_as(order))
        discount = torch.log2(1.0 + ranks.to(probs.dtype))  # (B, M)
        max_dcg = (gains / discount).masked_fill(~mask, 0.0).sum(1, keepdim=True)  # (B, 1)
        gains = gains / max_dcg.clamp_min(1e-12)
        gap = (ranks[:, :, None] - ranks[:, None, :]).abs().to(probs.dtype)  # (B, M, M)
        delta = (1.0 / torch.log2(1.0 + gap.clamp_min(1.0)) - 1.0 / torch.log2(2.0 + gap)).abs()
        pairs = (grades[:, :, None] > grades[:, None, :]) & mask[:, :, None] & mask[:, None, :]  # i above j
        weight = delta * (gains[:, :, None] - gains[:, None, :]).abs()
        margin = scores[:, :, None] - scores[:, None, :]  # s_i - s_j
        pair_loss = nn.functional.softplus(-self.sigma * margin) / math.log(2.0)  # log2(1 + e^{-sigma m})
        per_example = (weight * pair_loss).masked_fill(~pairs, 0.0).sum((1, 2))  # (B,)
        has_pairs = pairs.flatten(1).any(1)
        if not has_pairs.any():
            return probs.sum() * 0.0
        return per_example[has_pairs].mean()


class PermutationSensitiveLoss(nn.Module):
    r"""Permutation-sensitive loss (ALRO eq. 6): the cross-entropy between the model's answers for
    the same candidates shown in two orders, aligned by candidate.

    | input      | shape     | meaning                                                              |
    |------------|-----------|----------------------------------------------------------------------|
    | `logits`   | (B, T, M) | original order: logit at answer position t of candidate i's identifier|
    | `shuffled` | (B, T, M) | shuffled order, same positions; column i is the same candidate i     |
    |            |           | (its identifier token differs between the views)                      |
    | `mask`     | (B, M)    | candidate i exists                                                   |
    | `position_mask` | (B, T) | position t exists                                                  |

    Each position's distribution over candidates is the softmax of the identifier logits over the
    candidates (not the whole vocabulary). Returns -sum_i p_t(i) log q_t(i) with p from `logits`
    and q from `shuffled`, averaged over the existing positions of all examples. Both views get
    gradients, as in eq. 6 (both are P_theta); `detach_target=True` makes p a fixed target instead.

    >>> loss = PermutationSensitiveLoss()
    >>> same = torch.tensor([[[2.0, 0.0, -1.0]]])
    >>> round(loss(same, same, torch.ones(1, 3, dtype=torch.bool)).item(), 4)  # the entropy of p
    0.5243
    """

    def __init__(self, detach_target: bool = False) -> None:
        super().__init__()
        self.detach_target = detach_target

    def forward(self, logits: torch.Tensor, shuffled: torch.Tensor, mask: torch.Tensor,
                position_mask: torch.Tensor | None = None) -> torch.Tensor:
        _check("logits", logits, 3)
        if logits.shape != shuffled.shape or mask.shape != (logits.shape[0], logits.shape[2]):
            raise ValueError(f"logits {tuple(logits.shape)}, shuffled {tuple(shuffled.shape)} and mask "
                             f"{tuple(mask.shape)} disagree: expected (B, T, M), (B, T, M), (B, M)")
        if position_mask is None:
            position_mask = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
        hidden = ~mask.bool()[:, None, :]
        p = logits.masked_fill(hidden, float("-inf")).softmax(-1)  # (B, T, M)
        if self.detach_target:
            p = p.detach()
        log_q = shuffled.masked_fill(hidden, float("-inf")).log_softmax(-1)
        cross = -(p * log_q.masked_fill(hidden, 0.0)).sum(-1)  # (B, T)
        kept = position_mask.bool() & mask.bool().any(1)[:, None]
        if not kept.any():
            return logits.sum() * 0.0
        return cross[kept].mean()
