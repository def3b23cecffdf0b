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

import bz2
import csv
import gzip
import json
import logging
import lzma
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recranker.artifacts import atomic_write
from recranker.errors import DataError

log = logging.getLogger(__name__)

ITEM_TEXT_COLUMNS = ("title", "genres", "year", "author")
_YEAR = re.compile(r"^[1-9]\d{3}$")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}  # as pandas infers compression


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
        if len(log_frame) == 0:
            raise DataError(log_path, "no interactions: the file is empty")
        frame = log_frame.copy()
        for column in ("user", "item"):
            empty = frame[column].astype(str).str.strip().eq("").to_numpy()
            if empty.any():
                line = int(frame["line"].to_numpy()[empty][0])
                raise DataError(log_path, f"empty {column} id", line=line)
        if implicit or "rating" not in frame:
            frame["rating"] = "1"
        frame["rating"] = parse_numbers(frame, "rating", log_path, float)
        frame["timestamp"] = parse_numbers(frame, "timestamp", log_path, int)
        frame = _drop_duplicates(frame, log_path, duplicates)

        items_text = _item_text(item_frame, items_path) if item_frame is not None else None
        if items_text is not None:
            unknown = ~frame["item"].isin(items_text.index)
            if unknown.any():
                row = frame[unknown].iloc[0]
                raise DataError(
                    log_path,
                    f"item {row['item']!r} is not in the item table {items_path}",
                    line=int(row["line"]),
                )

        user_codes, user_ids = pd.factorize(frame["user"], sort=True)
        item_codes, item_ids = pd.factorize(frame["item"], sort=True)
        interactions = pd.DataFrame(
            {
                "user": user_codes.astype(np.int64),
                "item": item_codes.astype(np.int64),
                "rating": frame["rating"].to_numpy(np.float64),
                "timestamp": frame["timestamp"].to_numpy(np.int64),
            }
        )
        interactions = sort_interactions(interactions, user_ids, item_ids)
        item_ids = np.asarray(item_ids, dtype=object)
        if items_text is None:
            items = pd.DataFrame({c: [""] * len(item_ids) for c in ITEM_TEXT_COLUMNS})
        else:
            items = items_text.reindex(item_ids).reset_index(drop=True)
        missing_title = items["title"].eq("")
        items.loc[missing_title, "title"] = [f"item {i}" for i in item_ids[missing_title.to_numpy()]]
        return cls(
            name=name,
            interactions=interactions,
            user_ids=np.asarray(user_ids, dtype=object),
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
def read_table(
    path: str | Path,
    *,
    sep: str,
    columns: list[str] | None = None,
    required: tuple[str, ...] = (),
    encoding: str = "utf-8",
    quoting: int = 3,
) -> pd.DataFrame:
    """Read a delimited text file as strings, with a `line` column (1-based line in the file).

    `columns` names the columns of a file without a header; otherwise the first line is the header
    and every name in `required` must be in it. Blank lines hold no row but count in `line` (a
    row whose quoted field spans lines has the line where it starts); the header's line is in
    `frame.attrs["header_line"]`. Raises `DataError` on an empty file, a missing column or a row
    with too few fields.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty")
    header = None if columns else 0
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=header,
            names=columns,
            dtype=str,
            keep_default_na=False,
            encoding=encoding,
            engine="python" if len(sep) > 1 else "c",
            quoting=quoting,
        )
    except pd.errors.ParserError as exc:
        raise DataError(path, f"cannot parse: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "the file is empty") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not {encoding} text ({exc.reason})") from None
    lines = _record_lines(path, sep=sep, quoting=quoting, encoding=encoding)
    n_records = len(frame) + (header is not None)
    if lines is None or len(lines) != n_records:
        log.warning("%s: cannot tell the line of each row; reported lines may be off", path)
        lines = list(range(1, n_records + 1))
    if header is not None:
        frame.attrs["header_line"] = lines[0]
        lines = lines[1:]
    require_columns(frame, required, path)
    if len(frame) == 0:
        raise DataError(path, "the file has a header but no rows")
    frame["line"] = np.asarray(lines, dtype=np.int64)
    return frame


def _record_lines(path: Path, *, sep: str, quoting: int, encoding: str) -> list[int] | None:
    """The line where each record of the file starts, leaving out those pandas skips as blank.

    Blank for pandas' C engine (a one-character `sep`) is a line of spaces and tabs other than
    `sep`; for its python engine, a line without `sep` that is whitespace only. With csv quoting
    and a one-character `sep` a quoted field may span lines. None when the file cannot be split
    the way pandas did (a compression other than gzip, bz2 and xz).
    """
    opener = _OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rt", encoding=encoding, newline="") as fh:
            if len(sep) > 1:
                return [n for n, text in enumerate(fh, start=1) if text.strip() or sep in text]
            blank = set(" \t\r\n") - {sep}
            if quoting == csv.QUOTE_NONE:
                return [n for n, text in enumerate(fh, start=1) if not blank.issuperset(text)]
            return _quoted_record_lines(fh, sep, quoting, blank)
    except (UnicodeDecodeError, csv.Error):
        return None


def _quoted_record_lines(lines: Iterable[str], sep: str, quoting: int, blank: set[str]) -> list[int]:
    """`_record_lines` of a file with csv quoting: `csv.reader` tells where each record ends."""
    last = ""

    def remember() -> Iterator[str]:
        nonlocal last
        for last in lines:
            yield last

    reader = csv.reader(remember(), delimiter=sep, quoting=quoting)
    starts, end = [], 0
    for _ in reader:
        start, end = end + 1, reader.line_num
        if end > start or not blank.issuperset(last):
            starts.append(start)
    return starts


def require_columns(
    frame: pd.DataFrame, required: Iterable[str], path: str | Path, *, noun: str = "column"
) -> None:
    """A `DataError` on the header's line of `path` (`frame.attrs["header_line"]`, else 1) for the
    first name of `required` that is not a column of `frame`, listing the columns found."""
    for column in required:
        if column not in frame.columns:
            found = ", ".join(str(c) for c in frame.columns if c != "line")
            line = int(frame.attrs.get("header_line", 1))
            raise DataError(path, f"missing {noun} {column!r} (found: {found})", line=line)


def four_digit_year(text: str) -> str:
    """`text` stripped when it is a year 1000-9999, else empty (for year fields such as "0" or "n/a").

    >>> four_digit_year(" 1999 "), four_digit_year("0")
    ('1999', '')
    """
    text = text.strip()
    return text if _YEAR.match(text) else ""


def parse_numbers(frame: pd.DataFrame, column: str, path: str | Path, kind: type) -> pd.Series:
    """Column `column` as numbers; a value that is not one is a `DataError` with its line."""
    values = pd.to_numeric(frame[column].astype(str).str.strip(), errors="coerce")
    bad = values.isna() | ~np.isfinite(values.to_numpy(np.float64, na_value=np.nan))
    if bad.any():
        row = frame[bad.to_numpy()].iloc[0]
        raise DataError(path, f"{column} {row[column]!r} is not a number", line=int(row["line"]))
    if kind is int:
        return values.astype(np.float64).round().astype(np.int64)
    return values.astype(np.float64)


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
