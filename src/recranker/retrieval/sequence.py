"""What the sequential retrievers (SASRec, BERT4Rec) share: settings, batching, the transformer.

Tokens: item code c is token c + 1; token 0 is padding. Sequences are right-aligned (padded on the
left) to a fixed length `max_len`, so position `max_len - 1` always holds the newest item and a
learned position embedding means "so many steps before now" whatever the history's length.
Attention never reads a padding key, so padding changes no output at a real position.

A model file supplies `make_batch` (windows of training tokens -> inputs and targets) and
`query_tokens` (histories -> the inputs whose last position scores the next item).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from recranker.retrieval.base import RetrieverConfig, TorchRetriever, minibatches, optimize
from recranker.split import Split, Target


class SequenceConfig(RetrieverConfig):
    """Settings of a transformer over each user's liked items in time order."""

    max_len: int = Field(50, ge=2, description="positions the transformer reads (most recent items)")
    hidden: int = Field(64, ge=1, description="embedding and hidden size d")
    layers: int = Field(2, ge=1, description="transformer blocks")
    heads: int = Field(2, ge=1, description="attention heads (must divide hidden)")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="dropout on embeddings, attention and blocks")
    lr: float = Field(1e-3, gt=0.0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay on matrices and embeddings")
    batch_size: int = Field(128, ge=1, description="training windows per step")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="label smoothing of the softmax loss")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "SequenceConfig":
        if self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        return self


# ------------------------------------------------------------------------------- batching
def pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """(N, length) int64 tokens: each sequence's last `length` item codes + 1, left-padded with 0."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = np.asarray(seq, dtype=np.int64)[-length:]
        if len(tail):
            out[row, length - len(tail) :] = tail + 1
    return out


def windows(seqs: Sequence[np.ndarray], size: int, step: int, min_len: int = 1) -> list[np.ndarray]:
    """Cut each sequence, from its end backwards, into windows of at most `size` items.

    Window ends are `step` apart, so consecutive windows share `size - step` items; windows shorter
    than `min_len` are dropped.
    """
    if not 0 < step <= size:
        raise ValueError(f"need 0 < step <= size, got step={step}, size={size}")
    out = []
    for seq in seqs:
        for end in range(len(seq), 0, -step):
            window = seq[max(0, end - size) : end]
            if len(window) >= min_len:
                out.append(window)
            if end <= size:
                break
    return out


# ------------------------------------------------------------------------------- the transformer
class Block(nn.Module):
    """Pre-norm transformer block: masked multi-head self-attention, then a GELU MLP."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), mask (B, 1, T, T) true where a query may attend to a key -> (B, T, d)."""
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)  # 3 x (B, T, d)
        q, k, v = (t.view(B, T, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, h, T, dh)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, h, T, dh)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        x = x + self.drop(self.proj(y))
        return x + self.mlp(self.ln2(x))  # (B, T, d)


class SequenceTransformer(nn.Module):
    """Item and position embeddings, transformer blocks, a final layer norm; tied output layer.

    `forward(tokens)` gives the (B, n_items) scores of the next item read at the last position;
    `forward(tokens, targets)` gives the mean softmax cross-entropy over all items at every
    position whose target is >= 0 (an item code; -1 means no target).
    """

    def __init__(self, n_items: int, n_tokens: int, cfg: SequenceConfig, *, causal: bool) -> None:
        super().__init__()
        self.n_items, self.causal, self.label_smoothing = n_items, causal, cfg.label_smoothing
        self.items = nn.Embedding(n_tokens, cfg.hidden, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg.hidden, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.hidden)
        self.apply(_init)

    def attention_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, T) bool: keys that are not padding (and not later, if causal), plus oneself."""
        T = tokens.shape[1]
        allowed = (tokens != 0)[:, None, None, :]  # (B, 1, 1, T)
        if self.causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()  # (B, 1, T, T)
        return allowed | torch.eye(T, dtype=torch.bool, device=tokens.device)  # (B, 1, T, T)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) with T <= max_len, right-aligned -> hidden states (B, T, d)."""
        T = tokens.shape[1]
        start = self.positions.num_embeddings - T
        pos = torch.arange(start, start + T, device=tokens.device)  # (T,)
        x = self.drop(self.items(tokens) + self.positions(pos))  # (B, T, d)
        mask = self.attention_mask(tokens)
        for block in self.blocks:
            x = block(x, mask)  # (B, T, d)
        return self.ln(x)  # (B, T, d)

    def item_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., d) -> (..., n_items): dot products with the item embeddings."""
        return h @ self.items.weight[1 : self.n_items + 1].T

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Next-item scores (B, n_items) without targets; the training loss (scalar) with them."""
        h = self.encode(tokens)  # (B, T, d)
        if targets is None:
            return self.item_logits(h[:, -1])  # (B, n_items)
        keep = targets >= 0  # (B, T)
        logits = self.item_logits(h[keep])  # (N, n_items)
        return F.cross_entropy(logits, targets[keep], label_smoothing=self.label_smoothing)


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])


# ------------------------------------------------------------------------------- the retriever
class SequenceRetriever(TorchRetriever):
    """A next-item transformer over liked items: trains on `split.sequences("valid")` windows and
    scores a user at a target from `split.sequences(target)`."""

    Config = SequenceConfig
    causal: bool
    module: SequenceTransformer

    @property
    def _liked_only(self) -> bool:
        """Whether the sequences hold the liked items only (else every interaction: `positives`)."""
        return self.config.positives == "liked"

    @property
    def n_tokens(self) -> int:
        """Vocabulary size: padding plus the items (models may add special tokens)."""
        return self._require_split().n_items + 1

    @abstractmethod
    def training_windows(self, seqs: list[np.ndarray]) -> np.ndarray:
        """(W, L) padded token windows cut from the training sequences."""

    @abstractmethod
    def make_batch(self, rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, L) -> input tokens (B, max_len) and item-code targets (B, max_len), -1 for none."""

    @abstractmethod
    def query_tokens(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        """(U, max_len) tokens whose last position predicts each user's next item."""

    def build(self, split: Split, generator: torch.Generator) -> torch.optim.Optimizer:
        """Make the transformer and its AdamW (decay on matrices only); cut the training windows."""
        self._queries: dict[Target, torch.Tensor] = {}
        seqs = split.sequences("valid", liked_only=self._liked_only)
        self._windows = torch.from_numpy(self.training_windows(seqs))  # (W, L)
        self.module = SequenceTransformer(split.n_items, self.n_tokens, self.config, causal=self.causal)
        params = list(self.module.parameters())
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": self.config.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=self.config.lr)

    def train_epoch(self, split: Split, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """One shuffled pass over the training windows; the mean loss per step."""

        def losses() -> Iterator[torch.Tensor]:
            for idx in minibatches(len(self._windows), self.config.batch_size, generator):
                yield self.batch_loss(self._windows[idx], generator)

        return optimize(optimizer, losses())

    def batch_loss(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The training loss of a batch of windows (B, L): the next-item (or cloze) softmax loss."""
        tokens, targets = self.make_batch(rows, generator)  # (B, T), (B, T)
        return self.module(tokens.to(self.device), targets.to(self.device))

    def attach(self, split: Split) -> "SequenceRetriever":
        """Use `split` for histories; forget histories read from another split."""
        self._queries = {}
        return super().attach(split)  # type: ignore[return-value]

    def score_all(self, users: np.ndarray, target: Target = "test", *, batch_size: int = 512) -> np.ndarray:
        """(U, n_items) float32 scores of each user's next item after their history at `target`."""
        split = self._require_split()
        if target not in ("valid", "test"):
            raise ValueError(f"target must be 'valid' or 'test', got {target!r}")
        if target not in self._queries:
            seqs = split.sequences(target, liked_only=self._liked_only)
            self._queries[target] = torch.from_numpy(self.query_tokens(seqs))  # (n_users, T)
        tokens = self._queries[target][torch.from_numpy(np.array(users, dtype=np.int64))]  # (U, T)
        self.module.eval()
        with torch.no_grad():
            out = [self.module(chunk.to(self.device)).float().cpu() for chunk in tokens.split(batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, split.n_items), dtype=np.float32)
