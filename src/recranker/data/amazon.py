"""Loader for Amazon reviews (McAuley lab) as JSON lines, plain or gzip-compressed.

Reviews, one JSON object a line, in either release:

- 2018: `reviewerID`, `asin`, `overall` (1-5), `unixReviewTime` (seconds);
- 2023: `user_id`, `parent_asin` (else `asin`), `rating` (1-5), `timestamp` (milliseconds,
  converted to seconds).

Metadata (optional), one JSON object a line: `parent_asin` or `asin`; `title`; `categories` or
`category` (else `main_category`), a list joined with ", "; `brand`, else `author` (a name or an
object with a `name`), else `store`, as author; the year found in `date`, if any.

Repeated reviews of one item by one user keep the latest (on a tie in time, the highest rating,
whatever the order of the lines); reviews of items missing from the metadata are dropped (and
counted in the log), as are repeated metadata rows after the first; then the iterative k-core
filter (`core`, default 5) runs.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from recranker.data.dataset import Dataset, Feedback
from recranker.data.filters import apply_k_core, drop_unknown_items
from recranker.data.tables import parse_numbers
from recranker.errors import DataError

log = logging.getLogger(__name__)

REVIEW_KEYS = {
    "2018": {"user": "reviewerID", "item": "asin", "rating": "overall", "timestamp": "unixReviewTime"},
    "2023": {"user": "user_id", "item": "parent_asin", "rating": "rating", "timestamp": "timestamp"},
}
"""The JSON key of each log column, per release (2023 falls back to `asin` for the item)."""

_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")


def load_amazon(
    reviews_path: str | Path,
    meta_path: str | Path | None = None,
    *,
    name: str | None = None,
    core: int = 5,
    feedback: Feedback | None = None,
) -> Dataset:
    """Load Amazon reviews (2018 or 2023 JSON lines, `.gz` or plain) and optional metadata.

    `name` defaults to the file name without `.gz` and `.json`/`.jsonl` ("CDs_and_Vinyl").
    `core` is the k-core filter (0 or 1 disables it). Item text: title, categories as genres,
    brand or author, year.
    """
    reviews_path = Path(reviews_path)
    reviews = _read_reviews(reviews_path)
    items = None
    if meta_path is not None:
        meta_path = Path(meta_path)
        items = _read_meta(meta_path)
        reviews = drop_unknown_items(reviews, items, path=reviews_path)
    reviews = apply_k_core(reviews, core, path=reviews_path)
    return Dataset.from_frames(
        name or _stem(reviews_path),
        reviews,
        None if items is None else items[items["item"].isin(reviews["item"])],
        log_path=reviews_path,
        items_path=meta_path,
        feedback=feedback,
        duplicates="last",
    )


def json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file (`.gz` or plain).

    Raises `DataError` naming the file and line of a line that is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    number = 0
    try:
        with _open(path) as fh:
            for number, text in enumerate(fh, start=1):
                if text.strip():
                    yield number, _parse(text, path, number)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read: {exc}", line=number + 1) from None


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _parse(text: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(text.rstrip("\r\n"))  # a column past the end means "cut short"
    except json.JSONDecodeError as exc:
        raise DataError(path, f"bad JSON at column {exc.colno}: {exc.msg}", line=number) from None
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=number)
    return record


def _read_reviews(path: Path) -> pd.DataFrame:
    """The raw log of a reviews file, ratings and timestamps (seconds) checked as numbers."""
    columns: dict[str, list[Any]] = {"user": [], "item": [], "rating": [], "timestamp": [], "line": []}
    keys: dict[str, str] | None = None
    for number, record in json_lines(path):
        keys = keys or REVIEW_KEYS["2023" if "user_id" in record else "2018"]
        for column, key in keys.items():
            value = record.get(key)
            if value is None and column == "item":
                value = record.get("asin")
            if value is None:
                raise DataError(path, f"missing field {key!r}", line=number)
            columns[column].append(str(value))
        columns["line"].append(number)
    frame = pd.DataFrame(columns)
    if len(frame) == 0:
        return frame
    frame["rating"] = parse_numbers(frame, "rating", path, float)
    frame["timestamp"] = parse_numbers(frame, "timestamp", path, int)
    if keys is REVIEW_KEYS["2023"]:
        frame["timestamp"] //= 1000
    return frame


def _read_meta(path: Path) -> pd.DataFrame:
    """The item frame of a metadata file; an item listed twice keeps its first row."""
    rows = []
    for number, record in json_lines(path):
        item = record.get("parent_asin") or record.get("asin")
        if item is None:
            raise DataError(path, "missing field 'asin' (or 'parent_asin')", line=number)
        rows.append(
            {
                "item": str(item),
                "title": html.unescape(_text(record.get("title"))),
                "genres": _text(_first(record, "categories", "category", "main_category")),
                "author": _author(record),
                "year": _year(_text(record.get("date"))),
                "line": number,
            }
        )
    if not rows:
        raise DataError(path, "the file is empty")
    items = pd.DataFrame(rows)
    repeated = items["item"].duplicated()
    if repeated.any():
        log.info("%s: dropped %d repeated metadata rows", path, int(repeated.sum()))
        items = items[~repeated.to_numpy()]
    return items


def _text(value: Any) -> str:
    """A JSON value as text: lists (also nested, as in older releases) joined with ", "."""
    if value is None:
        return ""
    if isinstance(value, list):
        parts = (_text(part) for part in value)
        return ", ".join(part for part in parts if part)
    return str(value)


def _first(record: dict[str, Any], *keys: str) -> Any:
    """The value of the first key with a non-empty value, else None."""
    return next((record[key] for key in keys if record.get(key)), None)


def _author(record: dict[str, Any]) -> str:
    author = _first(record, "brand", "author", "store")
    if isinstance(author, dict):
        author = author.get("name")
    return html.unescape(_text(author))


def _year(date: str) -> str:
    match = _YEAR.search(date)
    return match[1] if match else ""


def _stem(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    for suffix in (".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name
