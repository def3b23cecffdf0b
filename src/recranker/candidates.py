"""Training candidates (DESIGN section 3): held-out folds of each user's training interactions.

Every training interaction is assigned to one of k folds, per user and spread evenly over the
user's ratings. A training instance of a user picks one fold: the candidates it asks about are
drawn from that fold's liked, neutral and disliked interactions plus non-interacted items
(negative sampling), and the history it shows is the user's other training interactions. So the
instance mirrors inference (a history, and candidates the history does not contain), and a hint
model fitted without that fold never saw the interactions the instance asks about (cross-fitting,
see `recranker.hints`).

Negatives are items the user has no interaction with before the test target and that are not a
target either, so no training prompt mentions a validation or test target of its user.

Retrieved candidates (`RetrievedCandidates`) are what inference asks about: the top of a ranking
model fitted without the fold, which excludes the items the prompt's history shows; the fold's
held-out interactions among them carry their ratings, every other item is a non-interacted one
(grade 0), and the user's validation and test targets are dropped from the list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import ConfigDict, Field

from recranker.settings import Settings
from recranker.split import Split

if TYPE_CHECKING:
    from recranker.retrieval import Retriever

#: relevance grade of a non-interacted (negatively sampled) candidate; observed items grade = rating
NEGATIVE_GRADE = 0.0


class CandidateCounts(Settings):
    """How many candidates of each kind one training instance draws (fewer when the fold lacks
    them; the shortfall is filled with negatives so every instance has the same size), and, when
    `source` is set, where this task's candidates come from instead of `prompts.candidate_source`."""

    model_config = ConfigDict(frozen=True)
    ADDED: ClassVar[frozenset[str]] = frozenset({"source"})

    liked: int = Field(1, ge=0, description="liked interactions of the held-out fold")
    neutral: int = Field(0, ge=0, description="neutral interactions of the held-out fold")
    disliked: int = Field(1, ge=0, description="disliked interactions of the held-out fold")
    negatives: int = Field(0, ge=0, description="non-interacted items, drawn uniformly")
    source: Literal["sampled", "retrieved", "mixed"] | None = Field(
        None, description="this task's training candidates: sampled, retrieved or mixed (see "
        "prompts.candidate_source, which applies when null); retrieved lists ignore the counts above")

    @property
    def total(self) -> int:
        """Candidates per instance."""
        return self.liked + self.neutral + self.disliked + self.negatives


@dataclass(frozen=True)
class Candidates:
    """Candidates of one training instance, in draw order (liked, neutral, disliked, negatives).

    | field  | shape | meaning                                              |
    |--------|-------|------------------------------------------------------|
    | items  | (c,)  | item codes                                           |
    | grades | (c,)  | the user's rating, or NEGATIVE_GRADE if not rated    |
    """

    items: np.ndarray
    grades: np.ndarray


def assign_folds(train: pd.DataFrame, k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each row of `train` (columns user, rating): per user, rows sorted by rating
    (ties at random) are dealt round-robin from a random starting fold, so each fold gets an even
    share of every user's interactions and ratings."""
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {k}")
    rng = np.random.default_rng(seed)
    users = train["user"].to_numpy(np.int64)
    order = np.lexsort((rng.random(len(train)), train["rating"].to_numpy(), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    offset = rng.integers(k, size=int(users.max()) + 1 if len(users) else 0)
    folds = np.empty(len(train), dtype=np.int64)
    folds[order] = (rank + offset[sorted_users]) % k
    return folds


class TrainingPools:
    """Per user, the training interactions with their folds, and the items that may serve as
    negatives. Draws are made with a caller's generator, so they are reproducible per instance."""

    def __init__(self, split: Split, k: int, seed: int) -> None:
        train = split.train  # sorted by user, then time
        self.split, self.k = split, k
        self.folds = assign_folds(train, k, seed)
        self.feedback = split.dataset.feedback
        users = train["user"].to_numpy(np.int64)
        bounds = np.searchsorted(users, np.arange(split.n_users + 1))
        self._bounds = bounds
        self._items = train["item"].to_numpy(np.int64)
        self._ratings = train["rating"].to_numpy(np.float64)
        self._forbidden = _forbidden_items(split)

    def rows(self, user: int) -> slice:
        """The user's rows of `split.train` (time order)."""
        return slice(self._bounds[user], self._bounds[user + 1])

    def fold_rows(self, fold: int) -> pd.DataFrame:
        """The training interactions (all users) assigned to `fold`."""
        return self.split.train[self.folds == fold]

    def usable_folds(self, user: int) -> np.ndarray:
        """Folds holding at least one liked interaction of `user` (all folds with any, if none)."""
        rows = self.rows(user)
        liked = self.feedback.liked(self._ratings[rows])
        folds = self.folds[rows]
        usable = np.unique(folds[liked])
        return usable if len(usable) else np.unique(folds)

    def history(self, user: int, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """Items and ratings of the user's training interactions outside `fold`, most recent first."""
        rows = self.rows(user)
        keep = self.folds[rows] != fold
        return self._items[rows][keep][::-1], self._ratings[rows][keep][::-1]

    def draw(self, user: int, fold: int, counts: CandidateCounts, rng: np.random.Generator) -> Candidates:
        """Candidates from the user's interactions in `fold` plus negatives (see `CandidateCounts`)."""
        rows = self.rows(user)
        held = self.folds[rows] == fold
        items, ratings = self._items[rows][held], self._ratings[rows][held]
        liked, disliked = self.feedback.liked(ratings), self.feedback.disliked(ratings)
        picked = []
        for mask, wanted in ((liked, counts.liked), (~liked & ~disliked, counts.neutral), (disliked, counts.disliked)):
            pool = np.flatnonzero(mask)
            picked.append(rng.permutation(pool)[:wanted])
        chosen = np.concatenate(picked).astype(np.int64)
        negatives = self.negatives(user, counts.total - len(chosen), rng)
        return Candidates(
            items=np.concatenate([items[chosen], negatives]),
            grades=np.concatenate([ratings[chosen], np.full(len(negatives), NEGATIVE_GRADE)]),
        )

    def negatives(self, user: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` distinct items drawn uniformly among those the user never interacted with before the
        test target and that are not one of the user's targets."""
        forbidden = self._forbidden[user]
        available = self.split.n_items - len(forbidden)
        if n > available:
            raise ValueError(f"user {user}: {n} negatives asked, only {available} items are not interacted with")
        out = np.zeros(0, dtype=np.int64)
        while len(out) < n:
            draw = rng.integers(self.split.n_items, size=2 * (n - len(out)) + 8)
            draw = draw[~np.isin(draw, forbidden)]
            out = np.concatenate([out, draw])
            _, first = np.unique(out, return_index=True)
            out = out[np.sort(first)]
        return out[:n]


class RetrievedCandidates:
    """Per fold f, each user's top-`depth` items of `models[f]` (a ranking model fitted without fold
    f, at the validation target, so without the items of the prompt's history), less the user's
    validation and test targets, graded by the user's ratings in fold f (0 elsewhere). Each fold's
    lists are computed once, for every user, when first asked for."""

    def __init__(self, pools: TrainingPools, models: Sequence["Retriever"], depth: int) -> None:
        if len(models) != pools.k:
            raise ValueError(f"retrieved candidates need one model per fold ({pools.k}), got {len(models)}")
        self.pools, self.models, self.depth = pools, models, depth
        split = pools.split
        self._targets = np.stack([np.full(split.n_users, -1, np.int64)] * 2)
        self._targets[:, split.users] = [split.target_items("valid"), split.target_items("test")]
        self._lists: dict[int, list[np.ndarray]] = {}

    def top(self, fold: int) -> list[np.ndarray]:
        """Per user code, the item codes of fold `fold`'s model, best first, targets and the
        history left out (up to `depth`; fewer only in a catalogue that small)."""
        if fold not in self._lists:
            users = np.arange(self.pools.split.n_users)
            ranked = self.models[fold].top_m(users, self.depth + 2, "valid", exclude="seen")
            keep = np.isfinite(ranked.scores) & (ranked.items != self._targets[0][:, None])
            keep &= ranked.items != self._targets[1][:, None]
            self._lists[fold] = [row[ok][: self.depth] for row, ok in zip(ranked.items, keep)]
        return self._lists[fold]

    def draw(self, user: int, fold: int) -> Candidates:
        """The user's retrieved candidates for `fold`, in the model's order."""
        items = self.top(fold)[user]
        rows = self.pools.rows(user)
        held = self.pools.folds[rows] == fold
        rating = dict(zip(self.pools._items[rows][held].tolist(), self.pools._ratings[rows][held].tolist()))
        grades = np.array([rating.get(int(i), NEGATIVE_GRADE) for i in items], dtype=np.float64)
        return Candidates(items=items.copy(), grades=grades)


def _forbidden_items(split: Split) -> list[np.ndarray]:
    """Per user code, the sorted items known before the test target plus both targets."""
    known = split.known
    users = np.concatenate([known["user"].to_numpy(np.int64), split.users, split.users])
    items = np.concatenate(
        [known["item"].to_numpy(np.int64), split.target_items("valid"), split.target_items("test")]
    )
    order = np.lexsort((items, users))
    users, items = users[order], items[order]
    bounds = np.searchsorted(users, np.arange(split.n_users + 1))
    return [np.unique(items[bounds[u] : bounds[u + 1]]) for u in range(split.n_users)]
