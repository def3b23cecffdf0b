"""`Rankings`: the one currency for ranked lists (DESIGN, pipeline).

A retriever's top-m, each LLM ranking task and the hybrid all produce `Rankings`, so fusion and
metrics never care where a list came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recranker.artifacts import atomic_write


@dataclass(frozen=True)
class Ranking:
    """One user's ranked list: item codes best first, with their scores."""

    user: int
    items: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class Rankings:
    """Ranked lists of many users, all of length m.

    | field  | shape  | dtype   | meaning                                   |
    |--------|--------|---------|-------------------------------------------|
    | users  | (U,)   | int64   | user codes                                |
    | items  | (U, m) | int64   | item codes, best first                    |
    | scores | (U, m) | float64 | score of each item (higher is better)     |
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        users = np.asarray(self.users, dtype=np.int64)
        items = np.asarray(self.items, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float64)
        if users.ndim != 1 or items.ndim != 2 or items.shape != scores.shape or len(users) != len(items):
            raise ValueError(
                f"Rankings needs users (U,), items (U, m), scores (U, m); got {users.shape}, "
                f"{items.shape}, {scores.shape}"
            )
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, row: int) -> Ranking:
        return Ranking(int(self.users[row]), self.items[row], self.scores[row])

    @property
    def depth(self) -> int:
        """Length m of every list."""
        return self.items.shape[1]

    @classmethod
    def from_scores(cls, users: np.ndarray, items: np.ndarray, scores: np.ndarray) -> "Rankings":
        """Sort each row of (U, m) `items` by descending `scores` (stable: ties keep input order)."""
        order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
        return cls(
            users,
            np.take_along_axis(np.asarray(items), order, axis=1),
            np.take_along_axis(np.asarray(scores, dtype=np.float64), order, axis=1),
        )

    def select(self, rows: np.ndarray | slice | list[int]) -> "Rankings":
        """The lists of `rows` (positions, a boolean mask over the users or a slice), in that order.

        >>> Rankings([7, 8, 9], [[1], [2], [3]], [[0.5], [0.4], [0.3]]).select([2, 0]).users.tolist()
        [9, 7]
        """
        return Rankings(self.users[rows], self.items[rows], self.scores[rows])

    def truncate(self, m: int) -> "Rankings":
        """The first `m` items of each list."""
        return Rankings(self.users, self.items[:, :m], self.scores[:, :m])

    def save(self, path: str | Path) -> None:
        """Write as .npz, atomically."""
        with atomic_write(path, binary=True) as fh:
            np.savez(fh, users=self.users, items=self.items, scores=self.scores)

    @classmethod
    def load(cls, path: str | Path) -> "Rankings":
        """Read a file written by `save`."""
        with np.load(path) as z:
            return cls(z["users"], z["items"], z["scores"])
