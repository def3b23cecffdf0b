"""Most-popular baseline: every user gets the items liked most often in training."""

from __future__ import annotations

import numpy as np

from recranker.retrieval.base import Retriever, RetrieverConfig
from recranker.split import Split, Target


class Popularity(Retriever):
    """Scores an item by how many training users liked it (or interacted with it, with
    `positives: interacted`; ties by item code)."""

    name = "pop"
    Config = RetrieverConfig

    def fit(self, split: Split, *, progress: bool = True) -> "Popularity":
        """Count the training positives (liked interactions, or every one) per item."""
        self.split = split
        positives = split.train_positives(self.config.positives)
        self.counts = np.bincount(positives["item"].to_numpy(), minlength=split.n_items).astype(np.float32)
        self.log = [{"epoch": 0, "valid_ndcg@10": self.validation_ndcg(split)}]
        return self

    def score_all(self, users: np.ndarray, target: Target = "test") -> np.ndarray:
        """The same popularity row for every user."""
        return np.broadcast_to(self.counts, (len(users), len(self.counts)))

    def state(self) -> dict:
        return {"counts": self.counts}

    def load_state(self, state: dict) -> None:
        self.counts = np.asarray(state["counts"], dtype=np.float32)
