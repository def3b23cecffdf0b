"""Reading delimited text files for the loaders: each row with the physical line it starts on
(1-based, counting the header and blank lines), and the checks of columns and values that name the
file and line of the first problem (`DataError`)."""

from __future__ import annotations

import bz2
import csv
import gzip
import logging
import lzma
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recranker.errors import DataError

log = logging.getLogger(__name__)

_YEAR = re.compile(r"^[1-9]\d{3}$")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}  # as pandas infers compression


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
    frame = _parsed(path, sep=sep, columns=columns, encoding=encoding, quoting=quoting)
    header = None if columns else 0
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


def _parsed(path: Path, *, sep: str, columns: list[str] | None, encoding: str, quoting: int) -> pd.DataFrame:
    """`path` read by pandas as strings (no line numbers yet); `DataError` when it cannot be."""
    if not path.exists():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty")
    try:
        return pd.read_csv(path, sep=sep, header=None if columns else 0, names=columns, dtype=str,
                           keep_default_na=False, encoding=encoding, engine="python" if len(sep) > 1 else "c",
                           quoting=quoting)
    except pd.errors.ParserError as exc:
        raise DataError(path, f"cannot parse: {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "the file is empty") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not {encoding} text ({exc.reason})") from None


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
