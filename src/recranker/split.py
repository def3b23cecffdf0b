"""Leave-one-out split by time on liked items (DESIGN section 1), and the leakage check.

For each user, interactions are ordered by time, ties broken by a fixed hash of the raw
(user id, item id) pair (the order of `Dataset.interactions`, see `recranker.data.dataset`). The
last liked interaction is the test target; the last liked interaction strictly before it is the
validation target. So among the liked interactions at one time, the target is the one with the
largest tie key: an arbitrary choice, but the same for the same data whatever the order of its
rows, and unrelated to how items are numbered. What is known for a target is every interaction strictly before the target's time:
`history("valid")` is the training set, `history("test")` adds whatever happened between the two
targets (the validation target among it). Interactions at or after the test target's time are
dropped. Users who cannot give both targets and at least one liked training interaction are left
out, with one warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recranker.data.dataset import Dataset, sort_interactions
from recranker.errors import DataError, RecrankerError

log = logging.getLogger(__name__)

#: which of a user's two targets a feature is for: the validation or the test target (the
#: parameters that take one are named `target`, everywhere in recranker)
Target = Literal["valid", "test"]
TARGETS: tuple[Target, Target] = ("valid", "test")

#: what a backbone learns from: the liked training interactions, or every one (exposure)
Positives = Literal["liked", "interacted"]


class LeakageError(RecrankerError, AssertionError):
    """Something available for a target was observed at or after the target's time."""


@dataclass(frozen=True)
class Split:
    """Train / validation / test of one dataset.

    `known` holds, for the users in the split, every interaction strictly before the user's test
    target (columns of `Dataset.interactions`, sorted by user, time, item). `targets` is indexed by
    user code with columns `valid_item`, `valid_time`, `test_item`, `test_time`.
    """

    dataset: Dataset
    known: pd.DataFrame
    targets: pd.DataFrame

    @property
    def n_users(self) -> int:
        """Users of the dataset (codes index every per-user array)."""
        return self.dataset.n_users

    @property
    def n_items(self) -> int:
        """Items of the dataset."""
        return self.dataset.n_items

    @property
    def users(self) -> np.ndarray:
        """Codes of the users that have targets, ascending."""
        return self.targets.index.to_numpy(np.int64)

    @cached_property
    def train(self) -> pd.DataFrame:
        """Training interactions: everything before each user's validation target."""
        return self.history("valid")

    def history(self, target: Target) -> pd.DataFrame:
        """Interactions strictly before each user's `target` (valid or test)."""
        cutoff = self.targets[f"{_check(target)}_time"].reindex(self.known["user"]).to_numpy()
        return self.known[self.known["timestamp"].to_numpy() < cutoff].reset_index(drop=True)

    def target_items(self, target: Target) -> np.ndarray:
        """Target item code of each user in `users`, for `target`."""
        return self.targets[f"{_check(target)}_item"].to_numpy(np.int64)

    def seen(self, target: Target, *, liked_only: bool = False) -> sp.csr_matrix:
        """(n_users, n_items) 0/1 matrix of items each user interacted with (or liked, when
        `liked_only`) before `target`. These are excluded from the full ranking.
        """
        hist = self.history(target)
        if liked_only:
            hist = hist[self.dataset.feedback.liked(hist["rating"].to_numpy())]
        data = np.ones(len(hist), dtype=np.float32)
        matrix = sp.csr_matrix(
            (data, (hist["user"].to_numpy(), hist["item"].to_numpy())),
            shape=(self.n_users, self.n_items),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def liked_train(self) -> pd.DataFrame:
        """Liked training interactions (the positives of implicit-feedback backbones)."""
        train = self.train
        return train[self.dataset.feedback.liked(train["rating"].to_numpy())].reset_index(drop=True)

    def train_positives(self, positives: Positives = "liked") -> pd.DataFrame:
        """The training interactions a backbone learns from: the liked ones (`"liked"`), or every
        one whatever its rating (`"interacted"`: what the user chose to see, an exposure model)."""
        if positives == "liked":
            return self.liked_train()
        if positives == "interacted":
            return self.train
        raise ValueError(f"positives must be 'liked' or 'interacted', got {positives!r}")

    def sequences(self, target: Target, *, liked_only: bool = True) -> list[np.ndarray]:
        """Per user code, the items before `target` in time order (empty for others)."""
        hist = self.history(target)
        if liked_only:
            hist = hist[self.dataset.feedback.liked(hist["rating"].to_numpy())]
        out = [np.zeros(0, dtype=np.int64) for _ in range(self.n_users)]
        users = hist["user"].to_numpy()
        items = hist["item"].to_numpy()
        bounds = np.flatnonzero(np.diff(users)) + 1
        for chunk_users, chunk_items in zip(np.split(users, bounds), np.split(items, bounds)):
            if len(chunk_users):
                out[int(chunk_users[0])] = chunk_items
        return out

    def holding_out(self, rows: pd.DataFrame) -> "Split":
        """The same split without the (user, item) interactions of `rows`: a model fitted on it never
        sees them (the cross-fitting of training hints). Targets are unchanged."""
        drop = pd.MultiIndex.from_frame(rows[["user", "item"]])
        keep = ~pd.MultiIndex.from_frame(self.known[["user", "item"]]).isin(drop)
        return Split(dataset=self.dataset, known=self.known[keep].reset_index(drop=True), targets=self.targets)

    # ----------------------------------------------------------------------------- persistence
    def save(self, directory: str) -> None:
        """Write the split (dataset, known interactions, targets) into `directory`."""
        from pathlib import Path

        from recranker.artifacts import atomic_write

        directory_path = Path(directory)
        self.dataset.save(directory_path)
        with atomic_write(directory_path / "split.npz", binary=True) as fh:
            np.savez(
                fh,
                known_index=self.known.index.to_numpy(),
                **{f"known_{c}": self.known[c].to_numpy() for c in self.known.columns},
                target_user=self.targets.index.to_numpy(),
                **{f"target_{c}": self.targets[c].to_numpy() for c in self.targets.columns},
            )

    @classmethod
    def load(cls, directory: str) -> "Split":
        """Read a split written by `save`."""
        from pathlib import Path

        dataset = Dataset.load(directory)
        with np.load(Path(directory) / "split.npz") as z:
            known = pd.DataFrame({c: z[f"known_{c}"] for c in ("user", "item", "rating", "timestamp")})
            targets = pd.DataFrame(
                {c: z[f"target_{c}"] for c in ("valid_item", "valid_time", "test_item", "test_time")},
                index=pd.Index(z["target_user"], name="user"),
            )
        return cls(dataset=dataset, known=known, targets=targets)


def _check(target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    return target


def leave_one_out(dataset: Dataset, *, source: str | None = None) -> Split:
    """Split `dataset` leave-one-out by time on liked items (see the module docstring)."""
    inter = sort_interactions(dataset.interactions, dataset.user_ids, dataset.item_ids)  # already so when built by a loader
    frame = inter.assign(liked=dataset.feedback.liked(inter["rating"].to_numpy()))

    liked_rows = frame[frame["liked"]]
    test = liked_rows.groupby("user", sort=True).tail(1).set_index("user")
    test_time = test["timestamp"].reindex(frame["user"]).to_numpy()
    before_test = frame[frame["timestamp"].to_numpy() < test_time]
    valid = before_test[before_test["liked"]].groupby("user", sort=True).tail(1).set_index("user")
    valid_time = valid["timestamp"].reindex(before_test["user"]).to_numpy()
    train_liked = before_test[before_test["liked"].to_numpy() & (before_test["timestamp"].to_numpy() < valid_time)]
    users_ok = np.intersect1d(valid.index.to_numpy(), train_liked["user"].unique())

    n_left_out = dataset.n_users - len(users_ok)
    if len(users_ok) == 0:
        raise DataError(
            source or dataset.name,
            "no user has 3 liked interactions at distinct times, so no leave-one-out split exists "
            f"(liked means rating >= {dataset.feedback.liked_min})",
        )
    if n_left_out:
        _warn_left_out(dataset, np.setdiff1d(np.arange(dataset.n_users), users_ok), source)

    targets = pd.DataFrame(
        {
            "valid_item": valid["item"].reindex(users_ok).to_numpy(np.int64),
            "valid_time": valid["timestamp"].reindex(users_ok).to_numpy(np.int64),
            "test_item": test["item"].reindex(users_ok).to_numpy(np.int64),
            "test_time": test["timestamp"].reindex(users_ok).to_numpy(np.int64),
        },
        index=pd.Index(users_ok, name="user"),
    )
    known = before_test[before_test["user"].isin(users_ok)][["user", "item", "rating", "timestamp"]]
    return Split(dataset=dataset, known=known.reset_index(drop=True), targets=targets)


def _warn_left_out(dataset: Dataset, users: np.ndarray, source: str | None) -> None:
    counts = np.bincount(dataset.interactions["user"].to_numpy(), minlength=dataset.n_users)
    example = int(users[0])
    log.warning(
        "%s: %d of %d users are left out of the split: they lack 3 liked interactions at distinct "
        "times (e.g. user %r with %d interaction%s)",
        source or dataset.name,
        len(users),
        dataset.n_users,
        str(dataset.user_ids[example]),
        counts[example],
        "" if counts[example] == 1 else "s",
    )


def assert_before(frame: pd.DataFrame, split: Split, target: Target, what: str) -> None:
    """Raise `LeakageError` unless every row of `frame` (columns `user`, `timestamp`, optional
    `item`) is strictly earlier than its user's `target` and is not the target itself.

    Use it on anything fed to a feature for `target`: histories, training data, hints.
    """
    targets = split.targets
    known = frame["user"].isin(targets.index).to_numpy()
    if not known.all():
        row = frame[~known].iloc[0]
        raise LeakageError(f"{what}: user {row['user']} has no {target} target in the split")
    times = targets[f"{_check(target)}_time"].reindex(frame["user"]).to_numpy()
    late = frame["timestamp"].to_numpy() >= times
    if late.any():
        row = frame[late].iloc[0]
        raise LeakageError(
            f"{what}: user {row['user']} has an interaction at time {row['timestamp']}, "
            f"at or after its {target} target's time"
        )
    if "item" in frame:
        same = frame["item"].to_numpy() == targets[f"{target}_item"].reindex(frame["user"]).to_numpy()
        if same.any():
            raise LeakageError(f"{what}: user {frame[same].iloc[0]['user']} sees its {target} target")


def check_leakage(split: Split) -> None:
    """Raise `LeakageError` if anything available for a target was observed at or after its time.

    Checks, for every user and target: each history interaction is strictly earlier than the
    target and is not the target; the validation target is earlier than the test target.
    """
    if not (split.targets["valid_time"] < split.targets["test_time"]).all():
        raise LeakageError("a validation target is not strictly before its test target")
    for target in TARGETS:
        assert_before(split.history(target), split, target, f"{target} history")
    assert_before(split.train, split, "valid", "training set")
