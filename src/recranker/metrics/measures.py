"""Ranking measures as small values (`HR@10`, `NDCG@5`) and their per-user computation.

Relevance is graded: `gains[u]` maps item -> gain > 0 for user u (a single leave-one-out target
is gain 1). Conventions follow trec_eval, against which the tests cross-check:

- HR@k: 1 if any relevant item is among the first k, else 0 (trec_eval `success_k`).
- NDCG@k: DCG@k / IDCG@k with linear gain, DCG@k = sum_{i<k} gain(item_i) / log2(i + 2); the ideal
  ordering uses all of the user's relevant items, listed or not, so a list that misses the target
  scores 0 (the "population" convention).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recranker.types import Rankings

_PATTERN = re.compile(r"^(HR|NDCG)@([1-9][0-9]*)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Measure:
    """A measure name and cutoff, e.g. `Measure("NDCG", 10)`, written `NDCG@10`."""

    name: str
    k: int

    def __str__(self) -> str:
        return f"{self.name}@{self.k}"

    @classmethod
    def parse(cls, text: "str | Measure") -> "Measure":
        """Parse `HR@k` or `NDCG@k` (case-insensitive)."""
        if isinstance(text, Measure):
            return text
        match = _PATTERN.match(text.strip())
        if not match:
            raise ValueError(f"unknown measure {text!r}: expected HR@k or NDCG@k, e.g. NDCG@10")
        return cls(match.group(1).upper(), int(match.group(2)))


def measures(*names: "str | Measure") -> list[Measure]:
    """Parse several measures: `measures("HR@3", "NDCG@3")`."""
    return [Measure.parse(n) for n in names]


def default_measures(ks: Iterable[int] = (3, 5, 10)) -> list[Measure]:
    """HR@k and NDCG@k for each k."""
    return [Measure(name, k) for name in ("HR", "NDCG") for k in ks]


Gains = Mapping[int, Mapping[int, float]]


def single_target_gains(users: Sequence[int] | np.ndarray, items: Sequence[int] | np.ndarray) -> dict:
    """Gains for leave-one-out: one relevant item (gain 1) per user."""
    return {int(u): {int(i): 1.0} for u, i in zip(users, items)}


def per_user(rankings: Rankings, gains: Gains, which: Iterable["str | Measure"]) -> pd.DataFrame:
    """One row per ranked user (index `user`), one column per measure, values in [0, 1].

    A user without relevant items is an error: that user cannot be evaluated.
    """
    ms = [Measure.parse(m) for m in which]
    depth = max((m.k for m in ms), default=0)
    n_users = len(rankings)
    gain_matrix = np.zeros((n_users, min(depth, rankings.depth)))
    ideal = np.zeros((n_users, depth))
    for row, user in enumerate(rankings.users.tolist()):
        user_gains = gains.get(user)
        if not user_gains:
            raise ValueError(f"user {user} has no relevant item: it cannot be evaluated")
        listed = rankings.items[row, : gain_matrix.shape[1]].tolist()
        gain_matrix[row] = [user_gains.get(item, 0.0) for item in listed]
        best = sorted(user_gains.values(), reverse=True)[:depth]
        ideal[row, : len(best)] = best
    discount = 1.0 / np.log2(np.arange(2, depth + 2))
    columns = {}
    for m in ms:
        top = gain_matrix[:, : m.k]
        if m.name == "HR":
            columns[str(m)] = (top > 0).any(axis=1).astype(np.float64)
        else:
            dcg = top @ discount[: top.shape[1]]
            idcg = ideal[:, : m.k] @ discount[: m.k]
            columns[str(m)] = dcg / idcg
    return pd.DataFrame(columns, index=pd.Index(rankings.users, name="user"))


def summarize(table: pd.DataFrame) -> dict[str, float]:
    """Mean of each measure over users."""
    return {str(c): float(table[c].mean()) for c in table.columns}


def covered(rankings: Rankings, gains: Gains) -> np.ndarray:
    """Boolean mask of the users whose list holds at least one relevant item.

    Restricting a `per_user` table to these users gives the "conditional" metric of DESIGN
    section 3; the whole table is the "population" metric.
    """
    return np.array(
        [any(int(i) in gains.get(int(u), {}) for i in items) for u, items in zip(rankings.users, rankings.items)],
        dtype=bool,
    )
