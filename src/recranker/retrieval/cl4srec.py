"""CL4SRec (Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022) on SASRec.

SASRec's next-item loss plus a contrastive task: each training window's input sequence is augmented
twice, each time by one of crop (keep a random contiguous `crop` share), mask (replace a random `mask`
share of the items by a [MASK] token) or reorder (shuffle a random contiguous `reorder` share), drawn
at random; the two views' representations (the transformer's output at the last position) are
pulled together by NT-Xent against the other 2(B - 1) views of the batch (dot products over
temperature `tau`), weighted by `cl_weight`. Scoring is SASRec's ([MASK] is never predicted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from recranker.retrieval.sasrec import SASRec, SASRecConfig


class CL4SRecConfig(SASRecConfig):
    """Settings of CL4SRec (SASRec's, plus the augmentations and the contrastive loss)."""

    cl_weight: float = Field(0.02, ge=0.0, description="weight of the contrastive (NT-Xent) loss (the paper: 0.1; "
                             "0.02 was better on the validation users of the default ML-100K split)")
    tau: float = Field(1.0, gt=0.0, description="temperature of the NT-Xent loss")
    crop: float = Field(0.6, gt=0.0, le=1.0, description="crop: share of the sequence kept")
    mask: float = Field(0.3, ge=0.0, lt=1.0, description="mask: share of the items masked")
    reorder: float = Field(0.6, ge=0.0, le=1.0, description="reorder: share of the sequence shuffled")


def augment(tokens: torch.Tensor, mask_token: int, cfg: CL4SRecConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view (crop, mask or reorder, drawn per row) of right-aligned tokens (B, T), 0 = padding."""
    out = torch.zeros_like(tokens)
    kinds = torch.randint(3, (len(tokens),), generator=generator).tolist()
    for row, kind in enumerate(kinds):
        seq = tokens[row][tokens[row] > 0]
        n = len(seq)
        if kind == 0:  # crop
            keep = max(1, int(cfg.crop * n))
            start = int(torch.randint(n - keep + 1, (1,), generator=generator))
            seq = seq[start : start + keep]
        elif kind == 1:  # mask
            seq = seq.clone()
            seq[torch.randperm(n, generator=generator)[: int(cfg.mask * n)]] = mask_token
        else:  # reorder
            k = max(1, int(cfg.reorder * n))
            start = int(torch.randint(n - k + 1, (1,), generator=generator))
            part = seq[start : start + k][torch.randperm(k, generator=generator)]
            seq = torch.cat([seq[:start], part, seq[start + k :]])
        if len(seq):
            out[row, tokens.shape[1] - len(seq) :] = seq
    return out


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent of the pairs (a[i], b[i]) (each (B, d)) against every other view of the batch."""
    z = torch.cat([a, b])  # (2B, d)
    logits = z @ z.T / tau  # (2B, 2B)
    logits = logits.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(a)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, targets)


class CL4SRec(SASRec):
    """SASRec trained with the next-item loss plus NT-Xent between two augmented views."""

    name = "cl4srec"
    Config = CL4SRecConfig
    config: CL4SRecConfig

    @property
    def n_tokens(self) -> int:
        """Padding, the items, and [MASK] (the last token)."""
        return self._require_split().n_items + 2

    def batch_loss(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """SASRec's loss of the windows (B, T + 1) + cl_weight x NT-Xent of two views of their inputs."""
        tokens, targets = self.make_batch(rows, generator)  # (B, T), (B, T)
        loss = self.module(tokens.to(self.device), targets.to(self.device))
        if self.config.cl_weight == 0:
            return loss
        views = torch.cat([augment(tokens, self.n_tokens - 1, self.config, generator) for _ in range(2)])  # (2B, T)
        h = self.module.encode(views.to(self.device))[:, -1]  # (2B, d)
        return loss + self.config.cl_weight * nt_xent(h[: len(tokens)], h[len(tokens) :], self.config.tau)
