"""The `Dataset` type: an interaction log with item text, users and items coded 0..n-1.

Every loader in `recranker.data` reads its own format into two raw frames (the log and the item
table, each with a `line` column giving the line of the source file) and hands them to
`Dataset.from_frames`, which does the checks that every format shares and names the file and line
of the first problem it finds. Lines are the physical lines of the file, 1-based, counting the
header and the blank lines (which hold no row).

A `Dataset` depends only on the content of the log, not on the order of its rows:

- user and item codes follow the sorted raw ids, compared as text ("10" before "9");
- interactions are sorted by (user, timestamp, tie key, item code), a total order since a user
  has one interaction per item. The tie key orders a user's interactions at the same time: a
  fixed hash of the raw (user id, item id) pair (`tie_keys`), so the order among ties is
  arbitrary but always the same for the same ids, and it favours no part of the catalogue.
  Breaking ties by item id instead would make the split's targets (the last liked interaction)
  the highest ids among items rated together, which in ML-100K are systematically less
  popular items: it lowered every backbone's test metrics (BERT4Rec's NDCG@10 from 0.099 to
  0.048; BENCHMARKS.md, section "backbones");
- with `duplicates="last"`, a repeated (user, item) pair keeps its latest interaction, and among
  several at that time the one with the highest rating.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recranker.artifacts import atomic_write
from recranker.data.tables import parse_numbers
from recranker.errors import DataError

log = logging.getLogger(__name__)

ITEM_TEXT_COLUMNS = ("title", "genres", "year", "author")


@dataclass(frozen=True)
class Feedback:
    """Thresholds that turn ratings into liked / disliked / neutral (DESIGN section 1)."""

    liked_min: float = 4.0
    disliked_max: float = 2.0

    def liked(self, rating: np.ndarray) -> np.ndarray:
        """Boolean mask of liked ratings."""
        return np.asarray(rating) >= self.liked_min

    def disliked(self, rating: np.ndarray) -> np.ndarray:
        """Boolean mask of disliked ratings."""
        return np.asarray(rating) <= self.disliked_max


@dataclass(frozen=True)
class Dataset:
    """An interaction log with item text.

    `interactions` has int64 columns `user`, `item` (codes into `user_ids` / `item_ids`),
    float64 `rating` and int64 `timestamp`, sorted by (user, timestamp, item) (see the module
    docstring: the order depends only on the log's content). `items` has one row per
    item code with the text columns `title`, `genres`, `year`, `author` (empty string when absent).
    For an implicit log every rating is 1.0 and `feedback` marks everything liked.
    """

    name: str
    interactions: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pd.DataFrame
    feedback: Feedback = field(default_factory=Feedback)
    implicit: bool = False

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.item_ids)

    def titles(self, items: np.ndarray | list[int]) -> list[str]:
        """Titles of the given item codes."""
        return self.items["title"].to_numpy()[np.asarray(items, dtype=np.int64)].tolist()

    def stats(self) -> dict[str, float | int | str]:
        """Users, items, interactions, density and liked / disliked / neutral counts."""
        rating = self.interactions["rating"].to_numpy()
        liked = int(self.feedback.liked(rating).sum())
        disliked = 0 if self.implicit else int(self.feedback.disliked(rating).sum())
        n = len(self.interactions)
        return {
            "dataset": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "density": n / max(1, self.n_users * self.n_items),
            "liked": liked,
            "disliked": disliked,
            "neutral": n - liked - disliked,
        }

    # ----------------------------------------------------------------------------- building
    @classmethod
    def from_frames(
        cls,
        name: str,
        log_frame: pd.DataFrame,
        item_frame: pd.DataFrame | None,
        *,
        log_path: str | Path,
        items_path: str | Path | None = None,
        feedback: Feedback | None = None,
        implicit: bool = False,
        duplicates: Literal["error", "last"] = "error",
    ) -> "Dataset":
        """Check and encode raw frames read by a loader.

        `log_frame` has string columns `user`, `item`, `rating` (absent when `implicit`),
        `timestamp` and an int `line` column; `item_frame` has `item`, `line` and any of the text
        columns. Raises `DataError` naming the file and line of the first problem.
        """
        frame = _checked_log(log_frame, log_path, implicit, duplicates)
        items_text = _item_text(item_frame, items_path) if item_frame is not None else None
        if items_text is not None:
            unknown = ~frame["item"].isin(items_text.index)
            if unknown.any():
                row = frame[unknown].iloc[0]
                raise DataError(log_path, f"item {row['item']!r} is not in the item table {items_path}",
                                line=int(row["line"]))
        interactions, user_ids, item_ids = _encoded(frame)
        if items_text is None:
            items = pd.DataFrame({c: [""] * len(item_ids) for c in ITEM_TEXT_COLUMNS})
        else:
            items = items_text.reindex(item_ids).reset_index(drop=True)
        missing_title = items["title"].eq("")
        items.loc[missing_title, "title"] = [f"item {i}" for i in item_ids[missing_title.to_numpy()]]
        return cls(
            name=name,
            interactions=interactions,
            user_ids=user_ids,
            item_ids=item_ids,
            items=items,
            feedback=Feedback(liked_min=1.0, disliked_max=0.0) if implicit else feedback or Feedback(),
            implicit=implicit,
        )

    # ----------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> None:
        """Write the dataset into `directory` (atomic per file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_write(directory / "interactions.npz", binary=True) as fh:
            np.savez(fh, **{c: self.interactions[c].to_numpy() for c in self.interactions.columns})
        meta = {
            "name": self.name,
            "implicit": self.implicit,
            "feedback": {"liked_min": self.feedback.liked_min, "disliked_max": self.feedback.disliked_max},
            "user_ids": [str(u) for u in self.user_ids],
            "item_ids": [str(i) for i in self.item_ids],
            "items": {c: self.items[c].tolist() for c in ITEM_TEXT_COLUMNS},
        }
        with atomic_write(directory / "dataset.json") as fh:
            json.dump(meta, fh)

    @classmethod
    def load(cls, directory: str | Path) -> "Dataset":
        """Read a dataset written by `save`."""
        directory = Path(directory)
        meta = json.loads((directory / "dataset.json").read_text())
        with np.load(directory / "interactions.npz") as arrays:
            interactions = pd.DataFrame({k: arrays[k] for k in ("user", "item", "rating", "timestamp")})
        return cls(
            name=meta["name"],
            interactions=interactions,
            user_ids=np.asarray(meta["user_ids"], dtype=object),
            item_ids=np.asarray(meta["item_ids"], dtype=object),
            items=pd.DataFrame(meta["items"]),
            feedback=Feedback(**meta["feedback"]),
            implicit=meta["implicit"],
        )


def _checked_log(log_frame: pd.DataFrame, path: str | Path, implicit: bool, duplicates: str) -> pd.DataFrame:
    """The raw log with ids present, ratings and timestamps as numbers and duplicates handled."""
    if len(log_frame) == 0:
        raise DataError(path, "no interactions: the file is empty")
    frame = log_frame.copy()
    for column in ("user", "item"):
        empty = frame[column].astype(str).str.strip().eq("").to_numpy()
        if empty.any():
            raise DataError(path, f"empty {column} id", line=int(frame["line"].to_numpy()[empty][0]))
    if implicit or "rating" not in frame:
        frame["rating"] = "1"
    frame["rating"] = parse_numbers(frame, "rating", path, float)
    frame["timestamp"] = parse_numbers(frame, "timestamp", path, int)
    return _drop_duplicates(frame, path, duplicates)


def _encoded(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The interactions with users and items coded by their sorted raw ids, in the one order of
    `sort_interactions`; and the raw ids of the codes."""
    user_codes, user_ids = pd.factorize(frame["user"], sort=True)
    item_codes, item_ids = pd.factorize(frame["item"], sort=True)
    interactions = pd.DataFrame({
        "user": user_codes.astype(np.int64),
        "item": item_codes.astype(np.int64),
        "rating": frame["rating"].to_numpy(np.float64),
        "timestamp": frame["timestamp"].to_numpy(np.int64),
    })
    user_ids, item_ids = np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object)
    return sort_interactions(interactions, user_ids, item_ids), user_ids, item_ids


def sort_interactions(frame: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray) -> pd.DataFrame:
    """`frame` (int columns `user`, `item`, `timestamp`: codes into `user_ids` / `item_ids`)
    sorted by (user, timestamp, tie key, item), with a fresh index: the one order of a
    `Dataset`'s interactions, whatever the order of the rows (see the module docstring)."""
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    ties = tie_keys(np.asarray(user_ids, dtype=object)[users], np.asarray(item_ids, dtype=object)[items])
    order = np.lexsort((items, ties, frame["timestamp"].to_numpy(), users))
    return frame.iloc[order].reset_index(drop=True)


def tie_keys(user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """uint64 key of each raw (user id, item id) pair: pandas' fixed-key SipHash of
    "user<TAB>item", the same on every machine and run.

    >>> int(tie_keys(np.array(["1"], dtype=object), np.array(["2"], dtype=object))[0])
    9219400262358317484
    """
    pairs = pd.Series(user_ids, dtype=str).str.cat(pd.Series(item_ids, dtype=str), sep="\t")
    return pd.util.hash_array(pairs.to_numpy(dtype=object))


# --------------------------------------------------------------------------------- shared checks


def _drop_duplicates(frame: pd.DataFrame, path: str | Path, policy: str) -> pd.DataFrame:
    dup = frame.duplicated(["user", "item"], keep=False)
    if not dup.any():
        return frame
    if policy == "error":
        rows = frame[dup]
        first = rows.iloc[0]
        twin = rows[(rows["user"] == first["user"]) & (rows["item"] == first["item"])].iloc[1]
        raise DataError(
            path,
            f"duplicate interaction of user {first['user']!r} with item {first['item']!r} "
            f"(also on line {int(first['line'])})",
            line=int(twin["line"]),
        )
    # the latest, then the highest rating: rows left tied are equal in content
    kept = frame.sort_values(["timestamp", "rating", "line"], kind="stable").drop_duplicates(
        ["user", "item"], keep="last"
    )
    log.info("%s: kept the latest of %d repeated user-item interactions", path, int(dup.sum()))
    return kept.sort_values("line", kind="stable")


def _item_text(frame: pd.DataFrame, path: str | Path | None) -> pd.DataFrame:
    """Item table indexed by raw item id, with the text columns (missing ones empty)."""
    if len(frame) == 0:
        raise DataError(path, "the item table has no rows")
    dup = frame["item"].duplicated()
    if dup.any():
        row = frame[dup].iloc[0]
        raise DataError(path, f"item {row['item']!r} appears twice", line=int(row["line"]))
    table = pd.DataFrame(index=pd.Index(frame["item"].astype(str), name="item"))
    for column in ITEM_TEXT_COLUMNS:
        values = frame[column] if column in frame else pd.Series([""] * len(frame))
        table[column] = [clean_text(v) for v in values.astype(str).tolist()]
    return table


def clean_text(value: str) -> str:
    """Collapse whitespace and strip; `nan`/`None` become empty."""
    value = " ".join(str(value).split())
    return "" if value.lower() in {"nan", "none", "null"} else value
