"""BERT4Rec: a bidirectional transformer trained by cloze (masked-item) prediction.

Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder Representations from
Transformer", CIKM 2019. Training masks each item of a window with probability `mask_prob` (at
least one per window) and predicts the masked items with a softmax over all items; to score a user,
[MASK] is appended after the history and its output position is read. The output layer is the
tied item embedding matrix.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pydantic import Field

from recranker.retrieval.sequence import SequenceConfig, SequenceRetriever, pad_left, windows


class BERT4RecConfig(SequenceConfig):
    """BERT4Rec settings; the defaults are tuned on MovieLens-100K (valid NDCG@10, two seeds).

    Cloze training sits on a popularity-like plateau (valid NDCG@10 about 0.035) for its first
    10-15 epochs before it learns the sequences: a high mask rate and a larger learning rate
    shorten the plateau, and patience 10 keeps early stopping from ending the run on it.
    """

    patience: int = Field(10, ge=1, description="evaluations without improvement before stopping")
    max_len: int = Field(50, ge=2, description="positions the transformer reads ([MASK] included)")
    lr: float = Field(2e-3, gt=0.0, description="AdamW learning rate")
    mask_prob: float = Field(0.4, gt=0.0, le=1.0, description="chance that a training item is masked")


def mask_items(
    rows: torch.Tensor, mask_token: int, mask_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cloze inputs and targets from right-aligned token windows (B, T), 0 for padding.

    Each real token is replaced by `mask_token` with probability `mask_prob`; a window left with no
    mask gets its newest item masked. Targets are the masked item codes (token - 1), -1 elsewhere.
    """
    real = rows > 0  # (B, T)
    masked = real & (torch.rand(rows.shape, generator=generator) < mask_prob)  # (B, T)
    masked[:, -1] |= ~masked.any(dim=1)
    tokens = torch.where(masked, torch.full_like(rows, mask_token), rows)  # (B, T)
    targets = torch.where(masked, rows - 1, torch.full_like(rows, -1))  # (B, T)
    return tokens, targets


class BERT4Rec(SequenceRetriever):
    """Cloze-trained bidirectional transformer; scores = hidden state at a trailing [MASK] . items."""

    name = "bert4rec"
    Config = BERT4RecConfig
    causal = False

    @property
    def n_tokens(self) -> int:
        """Padding, the items, and [MASK] (the last token)."""
        return self._require_split().n_items + 2

    def training_windows(self, seqs: list[np.ndarray]) -> np.ndarray:
        """(W, max_len) disjoint windows covering every training item once."""
        T = self.config.max_len
        return pad_left(windows(seqs, size=T, step=T), T)

    def make_batch(self, rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, T) -> masked inputs (B, T) and targets (B, T) (see `mask_items`)."""
        return mask_items(rows, self.n_tokens - 1, self.config.mask_prob, generator)

    def query_tokens(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """(U, T): each history's last `max_len - 1` items, then [MASK]."""
        tokens = pad_left(seqs, self.config.max_len - 1)  # (U, T - 1)
        return np.concatenate([tokens, np.full((len(tokens), 1), self.n_tokens - 1, dtype=np.int64)], axis=1)
