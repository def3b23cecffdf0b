"""Filters on raw interaction frames (columns `user`, `item`, ...), shared by the loaders.

They run before `Dataset.from_frames`, on the frames a loader has read, so the rows they keep
still carry their `line` in the source file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from recranker.errors import DataError

log = logging.getLogger(__name__)


def k_core(frame: pd.DataFrame, core: int) -> pd.DataFrame:
    """The k-core of a log: the largest part where every user and item has `core` interactions.

    Drops users and items with fewer than `core` distinct interactions (a repeated user-item pair
    counts once), again and again until none is left below `core`. Rows keep their index and
    their other columns. `core <= 1` returns the frame unchanged.

    >>> frame = pd.DataFrame({"user": list("aabbc"), "item": list("xyxyy")})
    >>> k_core(frame, 2)["user"].tolist()
    ['a', 'a', 'b', 'b']
    """
    if core <= 1:
        return frame
    kept = frame
    while len(kept):
        pairs = kept.drop_duplicates(["user", "item"])
        user_counts = pairs["user"].value_counts()
        item_counts = pairs["item"].value_counts()
        enough = kept["user"].map(user_counts).ge(core) & kept["item"].map(item_counts).ge(core)
        if enough.all():
            break
        kept = kept[enough.to_numpy()]
    return kept


def apply_k_core(frame: pd.DataFrame, core: int, *, path: str | Path) -> pd.DataFrame:
    """`k_core` that logs what it dropped and raises `DataError` naming `path` if nothing is left."""
    kept = k_core(frame, core)
    if len(kept) == len(frame):
        return kept
    if len(kept) == 0:
        raise DataError(path, f"no interactions left after the {core}-core filter ({len(frame)} before)")
    log.info(
        "%s: the %d-core filter kept %d of %d interactions (%d users, %d items)",
        path,
        core,
        len(kept),
        len(frame),
        kept["user"].nunique(),
        kept["item"].nunique(),
    )
    return kept


def drop_unknown_items(frame: pd.DataFrame, items: pd.DataFrame, *, path: str | Path) -> pd.DataFrame:
    """Drop the interactions whose item is not in the item table `items`, logging how many.

    For formats whose real files are known to rate items missing from their item table
    (Book-Crossing, Amazon); other loaders let `Dataset.from_frames` report such an item as an error.
    """
    known = frame["item"].isin(items["item"])
    if known.all():
        return frame
    if not known.any():
        row = frame.iloc[0]
        raise DataError(
            path,
            f"no interaction has its item in the item table (e.g. item {row['item']!r})",
            line=int(row["line"]),
        )
    log.info(
        "%s: dropped %d of %d interactions whose item is not in the item table",
        path,
        int((~known).sum()),
        len(frame),
    )
    return frame[known.to_numpy()]
