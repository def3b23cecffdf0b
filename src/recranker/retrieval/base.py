"""The retriever contract: `fit(split)`, `score(users, items)`, `top_m(users, m)`.

A retriever trains only on `split.train` (everything before each user's validation target) and
scores users at a target: "valid" or "test". Sequential models read the user's history at that
target (the test-target history adds the validation target); the others ignore the target. Training
is seeded and stops early on validation NDCG@10 over the full ranking.
"""

from __future__ import annotations

import copy
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import ConfigDict, Field
from tqdm.auto import tqdm

from recranker.artifacts import atomic_write
from recranker.metrics import Measure, per_user, single_target_gains
from recranker.settings import Settings
from recranker.split import Positives, Split, Target
from recranker.types import Rankings

log = logging.getLogger(__name__)

Exclude = Literal["seen", "liked", "none"]


class RetrieverConfig(Settings):
    """Settings every retriever shares; each model extends it with its own."""

    model_config = ConfigDict(frozen=True)
    # `positives` came after runs were made: left out at its default, so the fingerprints of
    # those runs' backbones (which hash the dumped settings) stay what they were
    ADDED: ClassVar[frozenset[str]] = frozenset({"positives"})

    seed: int = 0
    epochs: int = Field(200, ge=0, description="most epochs to train")
    patience: int = Field(5, ge=1, description="evaluations without improvement before stopping")
    eval_every: int = Field(1, ge=1, description="epochs between validation evaluations")
    max_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget of training; after it, stop at the next evaluation (best weights kept)")
    device: str = Field("cpu", description="torch device: cpu, cuda, or auto")
    positives: Positives = Field(
        "liked", description="what the model learns from: the liked training interactions, or every interaction "
        "whatever its rating ('interacted': an exposure model, blind to what the user thought of an item; "
        "biased_mf fits every rating either way)")


class Retriever(ABC):
    """Base class of the conventional models: popularity, MF, LightGCN, SASRec, BERT4Rec."""

    name: ClassVar[str]
    Config: ClassVar[type[RetrieverConfig]] = RetrieverConfig

    def __init__(self, config: RetrieverConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        if not isinstance(self.config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}")
        self.split: Split | None = None
        self.log: list[dict[str, float]] = []

    # --------------------------------------------------------------------------- contract
    @abstractmethod
    def fit(self, split: Split, *, progress: bool = True) -> "Retriever":
        """Train on `split.train`; returns self."""

    @abstractmethod
    def score_all(self, users: np.ndarray, target: Target = "test") -> np.ndarray:
        """(U, n_items) float32 scores of every item for `users` at `target`."""

    def score(self, users: np.ndarray, items: np.ndarray, target: Target = "test") -> np.ndarray:
        """(U, m) scores of `items[u]` (shape (U, m)) for each user."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if items.ndim != 2 or len(items) != len(users):
            raise ValueError(f"items must be (U, m) with U={len(users)}, got {items.shape}")
        return np.take_along_axis(self.score_all(users, target), items, axis=1)

    def top_m(
        self,
        users: np.ndarray,
        m: int,
        target: Target = "test",
        *,
        exclude: Exclude = "seen",
        batch_size: int = 1024,
    ) -> Rankings:
        """Each user's m best items at `target`.

        `exclude`: "seen" leaves out every item the user interacted with before the target (the
        default), "liked" only the liked ones (RecBole's protocol on a liked-only log), "none"
        nothing.
        """
        split = self._require_split()
        users = np.asarray(users, dtype=np.int64)
        if exclude not in ("seen", "liked", "none"):
            raise ValueError(f"exclude must be 'seen', 'liked' or 'none', got {exclude!r}")
        seen = None if exclude == "none" else split.seen(target, liked_only=exclude == "liked")
        items, scores = [], []
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            s = np.array(self.score_all(batch, target), dtype=np.float32, copy=True)  # (B, I)
            if seen is not None:
                rows = seen[batch]
                s[rows.nonzero()] = -np.inf
            top = np.argpartition(-s, kth=min(m, s.shape[1]) - 1, axis=1)[:, :m]  # (B, m)
            top_scores = np.take_along_axis(s, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)  # by score, ties by item code
            items.append(np.take_along_axis(top, order, axis=1))
            scores.append(np.take_along_axis(top_scores, order, axis=1))
        return Rankings(users, np.concatenate(items), np.concatenate(scores))

    # --------------------------------------------------------------------------- evaluation
    def evaluate(
        self, split: Split, target: Target, which: list[str] | None = None, *, exclude: Exclude = "seen"
    ) -> pd.DataFrame:
        """Per-user full-ranking metrics at `target` (a DataFrame, one column per measure)."""
        which = which or ["HR@10", "NDCG@10"]
        depth = max(Measure.parse(m).k for m in which)
        ranked = self.top_m(split.users, depth, target, exclude=exclude)
        return per_user(ranked, single_target_gains(split.users, split.target_items(target)), which)

    def validation_ndcg(self, split: Split, k: int = 10) -> float:
        """Mean NDCG@k over the validation users, full ranking."""
        return float(self.evaluate(split, "valid", [f"NDCG@{k}"]).iloc[:, 0].mean())

    # --------------------------------------------------------------------------- persistence
    def state(self) -> dict[str, Any]:
        """Everything needed to score again, besides the split."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state` returned."""

    def save(self, path: str | Path) -> None:
        """Write the model (name, config, state, training log) to `path`, atomically."""
        payload = {
            "name": self.name,
            "config": self.config.model_dump(),
            "state": self.state(),
            "log": self.log,
        }
        with atomic_write(path, binary=True) as fh:
            torch.save(payload, fh)

    def attach(self, split: Split) -> "Retriever":
        """Use `split` for histories and seen items (after loading)."""
        self.split = split
        return self

    def _require_split(self) -> Split:
        if self.split is None:
            raise RuntimeError(f"{self.name}: call fit(split) or attach(split) first")
        return self.split


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled row indices of `n` rows, `batch_size` at a time."""
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def optimize(optimizer: torch.optim.Optimizer, losses: Iterable[torch.Tensor]) -> float:
    """One optimizer step per loss of `losses` (computed lazily, after the previous step);
    returns the mean loss, 0.0 when there were none."""
    total, steps = 0.0, 0
    for loss in losses:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
    return total / max(steps, 1)


class TorchRetriever(Retriever):
    """A retriever trained by epochs of a torch module, with early stopping on validation NDCG@10.

    Subclasses implement `build` (make `self.module` and an optimizer), `train_epoch` (one pass,
    returning the mean loss) and `score_all`.
    """

    module: torch.nn.Module

    @abstractmethod
    def build(self, split: Split, generator: torch.Generator) -> torch.optim.Optimizer:
        """Create `self.module` for `split`; return its optimizer."""

    @abstractmethod
    def train_epoch(self, split: Split, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> float:
        """Train one epoch; return the mean loss."""

    @property
    def device(self) -> torch.device:
        """The torch device named by the config."""
        name = self.config.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(name)

    #: the logged validation measure early stopping watches, and whether higher is better
    monitor: ClassVar[str] = "valid_ndcg@10"
    monitor_higher: ClassVar[bool] = True

    def validate(self, split: Split) -> dict[str, float]:
        """Validation measures to log after an epoch; must include `monitor`."""
        return {"valid_ndcg@10": self.validation_ndcg(split)}

    def fit(self, split: Split, *, progress: bool = True) -> "TorchRetriever":
        """Train with early stopping on `monitor`; keeps the weights of the best evaluation.
        Gradients are on while it trains, whatever the caller's grad mode (no_grad, inference_mode)."""
        with torch.inference_mode(False), torch.enable_grad():
            return self._train(split, progress)

    def _train(self, split: Split, progress: bool) -> "TorchRetriever":
        cfg = self.config
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % (2**32))
        generator = torch.Generator().manual_seed(cfg.seed)
        self.split = split
        optimizer = self.build(split, generator)
        self.module.to(self.device)
        sign = 1.0 if self.monitor_higher else -1.0
        best, best_state, bad, started = -np.inf, None, 0, time.perf_counter()
        self.log, self.stopped_by_budget = [], False
        bar = tqdm(range(1, cfg.epochs + 1), desc=f"fit {self.name}", disable=not progress, leave=False)
        for epoch in bar:
            self.module.train()
            entry = {"epoch": epoch, "loss": self.train_epoch(split, optimizer, generator)}
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                self.module.eval()
                with torch.no_grad():
                    entry.update(self.validate(split))
                value = sign * entry[self.monitor]
                if value > best:
                    best, bad = value, 0
                    best_state = copy.deepcopy(self.module.state_dict())
                else:
                    bad += 1
                bar.set_postfix(loss=f"{entry['loss']:.4f}", **{self.monitor: f"{entry[self.monitor]:.4f}"})
            self.log.append({**entry, "seconds": time.perf_counter() - started})
            if bad >= cfg.patience:
                break
            if cfg.max_minutes is not None and self.monitor in entry and self.log[-1]["seconds"] >= 60 * cfg.max_minutes:
                log.info("%s: stopped by max_minutes=%g after %d epochs", self.name, cfg.max_minutes, epoch)
                self.stopped_by_budget = True
                break
        if best_state is not None:
            self.module.load_state_dict(best_state)
        self.module.eval()
        log.info("%s: best %s %.4f after %d epochs", self.name, self.monitor, sign * best, len(self.log))
        return self

    def state(self) -> dict[str, Any]:
        return {"module": self.module.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.module.eval()
