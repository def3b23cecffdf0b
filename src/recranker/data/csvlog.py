"""Loader for a plain CSV interaction log and an optional item table: bring your own data.

The log has a header with `user`, `item`, `rating` (optional when implicit) and `timestamp`
(any number, e.g. Unix seconds); the item table has `item` and `title`, and optionally `genres`,
`year` and `author`. Other columns are ignored; fields may be quoted ("Heat, The").
"""

from __future__ import annotations

import csv
from pathlib import Path

from recranker.data.dataset import ITEM_TEXT_COLUMNS, Dataset, Feedback
from recranker.data.tables import read_table

LOG_COLUMNS = ("user", "item", "rating", "timestamp")
ITEM_COLUMNS = ("item", "title")
"""The columns the log and the item table must have (`rating` only for explicit feedback)."""


def load_csv(
    log_path: str | Path,
    items_path: str | Path | None = None,
    *,
    name: str | None = None,
    sep: str = ",",
    implicit: bool = False,
    feedback: Feedback | None = None,
) -> Dataset:
    """Load a CSV log (and item table) as a dataset named `name` (default: the log's file stem).

    With `implicit=True` the log needs no `rating` column (one that is there is ignored) and
    every interaction is liked.
    """
    log_path = Path(log_path)
    required = tuple(c for c in LOG_COLUMNS if c != "rating" or not implicit)
    log_frame = read_table(log_path, sep=sep, required=required, quoting=csv.QUOTE_MINIMAL)
    items = None
    if items_path is not None:
        items_path = Path(items_path)
        table = read_table(items_path, sep=sep, required=ITEM_COLUMNS, quoting=csv.QUOTE_MINIMAL)
        items = table[[c for c in ("item", *ITEM_TEXT_COLUMNS, "line") if c in table]]
    return Dataset.from_frames(
        name or log_path.stem,
        log_frame[[c for c in (*LOG_COLUMNS, "line") if c in log_frame]],
        items,
        log_path=log_path,
        items_path=items_path,
        feedback=feedback,
        implicit=implicit,
    )
