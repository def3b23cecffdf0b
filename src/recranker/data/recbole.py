"""Loader for RecBole atomic files: `<name>.inter` and, optionally, `<name>.item`.

Atomic files are tab-separated with a header of `field:type` names, e.g.
`user_id:token	item_id:token	rating:float	timestamp:float` and
`item_id:token	movie_title:token_seq	release_year:token	class:token_seq`. Fields are found by
name (the `:type` is ignored); a log without a `rating` field is implicit feedback.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from recranker.data.dataset import Dataset, Feedback
from recranker.data.tables import four_digit_year, read_table, require_columns
from recranker.errors import DataError

TEXT_FIELDS = {
    "movie_title": "title",
    "title": "title",
    "book_title": "title",
    "release_year": "year",
    "year": "year",
    "publication_year": "year",
    "class": "genres",
    "genre": "genres",
    "genres": "genres",
    "categories": "genres",
    "author": "author",
    "book_author": "author",
    "brand": "author",
}
"""RecBole item fields read as item text, and the text column each one fills."""

_WORD_GENRES = {"class", "genre"}  # token_seq of one-word genres: "Animation Children's Comedy"


def load_recbole(
    directory: str | Path,
    name: str | None = None,
    *,
    feedback: Feedback | None = None,
    implicit: bool | None = None,
) -> Dataset:
    """Load the RecBole dataset `name` from `directory` (`<name>.inter`, optional `<name>.item`).

    `name` defaults to the stem of the one `*.inter` file in `directory`. `implicit` defaults to
    whether the log lacks a `rating` field; `implicit=False` on such a log is an error, and
    `implicit=True` ignores the ratings. Genre fields of one-word tokens ("class", "genre") become
    "Animation, Comedy".
    """
    directory = Path(directory)
    name = name or _infer_name(directory)
    inter_path, item_path = directory / f"{name}.inter", directory / f"{name}.item"
    log_frame, _ = _read_atomic(inter_path)
    require_columns(log_frame, ("user_id", "item_id", "timestamp"), inter_path, noun="field")
    if implicit is None:
        implicit = "rating" not in log_frame
    if not implicit:
        require_columns(log_frame, ("rating",), inter_path, noun="field")
    log_frame = log_frame.rename(columns={"user_id": "user", "item_id": "item"})
    items = _items(item_path) if item_path.exists() else None
    return Dataset.from_frames(
        name,
        log_frame,
        items,
        log_path=inter_path,
        items_path=item_path if items is not None else None,
        feedback=feedback,
        implicit=implicit,
    )


def _infer_name(directory: Path) -> str:
    inter_files = sorted(directory.glob("*.inter"))
    if len(inter_files) != 1:
        found = ", ".join(p.name for p in inter_files) or "none"
        raise DataError(
            directory, f"expected exactly one RecBole .inter file to infer the name; found: {found}"
        )
    return inter_files[0].stem


def _read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """An atomic file as strings with columns named by field, and each field's declared type."""
    frame = read_table(path, sep="\t", quoting=csv.QUOTE_NONE)
    names = [str(c) for c in frame.columns if c != "line"]
    fields = [name.partition(":") for name in names]
    frame.columns = [field.strip() for field, _, _ in fields] + ["line"]
    return frame, {field.strip(): kind.strip() for field, _, kind in fields}


def _items(path: Path) -> pd.DataFrame:
    """The item frame of a `.item` file: `item`, `line` and the text columns it has."""
    frame, types = _read_atomic(path)
    require_columns(frame, ("item_id",), path, noun="field")
    items = pd.DataFrame({"item": frame["item_id"], "line": frame["line"]})
    for field, column in TEXT_FIELDS.items():
        if field not in frame or column in items:
            continue
        values = frame[field].astype(str)
        if field in _WORD_GENRES and types[field] == "token_seq":
            values = values.map(lambda text: ", ".join(text.split()))
        if column == "year":
            values = values.map(four_digit_year)
        items[column] = values
    return items
