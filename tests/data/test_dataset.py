"""Shared checks of `read_table` / `Dataset.from_frames`, and the k-core filter."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recranker.data.dataset import Dataset
from recranker.data.tables import read_table
from recranker.data.filters import apply_k_core, drop_unknown_items, k_core
from recranker.errors import DataError

LOG_COLUMNS = ("user", "item", "rating", "timestamp")


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _load(log_path: Path, items_path: Path | None = None, **options: object) -> Dataset:
    frame = read_table(log_path, sep=",", required=LOG_COLUMNS)
    items = read_table(items_path, sep=",", required=("item", "title")) if items_path else None
    return Dataset.from_frames(
        "t", frame, items, log_path=log_path, items_path=items_path, **options
    )


def _error(excinfo: pytest.ExceptionInfo[DataError], path: Path, line: int | None) -> str:
    """The message, after checking that it names `path` and `line`."""
    error = excinfo.value
    assert error.path == str(path)
    assert error.line == line
    where = f"{path}, line {line}: " if line is not None else f"{path}: "
    assert str(error).startswith(where)
    return error.problem


def test_codes_sort_order_and_item_text(tmp_path: Path) -> None:
    log_path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\nb,x,4,30\na,y,2,20\nb,y,5,10\n")
    items_path = _write(tmp_path / "items.csv", "item,title,year\nx,Heat,1995\ny,,\nz,Unrated,2001\n")
    data = _load(log_path, items_path)
    assert data.user_ids.tolist() == ["a", "b"]
    assert data.item_ids.tolist() == ["x", "y"]  # the unrated item z is left out
    frame = data.interactions
    assert frame["user"].tolist() == [0, 1, 1]  # sorted by (user, timestamp)
    assert frame["item"].tolist() == [1, 1, 0]
    assert frame["timestamp"].tolist() == [20, 10, 30]
    assert frame["rating"].tolist() == [2.0, 5.0, 4.0]
    assert frame.dtypes.astype(str).tolist() == ["int64", "int64", "float64", "int64"]
    assert data.titles([0, 1]) == ["Heat", "item y"]  # a missing title falls back to the id
    assert data.items["year"].tolist() == ["1995", ""]
    assert data.stats()["liked"] == 2 and data.stats()["disliked"] == 1


def test_read_table_line_numbers(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path / "a.tsv", "1\t2\n3\t4\n"), sep="\t", columns=["u", "i"])
    assert frame["line"].tolist() == [1, 2]
    frame = read_table(_write(tmp_path / "b.csv", "u,i\n1,2\n3,4\n"), sep=",")
    assert frame["line"].tolist() == [2, 3]
    assert frame.attrs["header_line"] == 1


@pytest.mark.parametrize(
    ("sep", "quoting"),
    [(",", csv.QUOTE_NONE), (",", csv.QUOTE_MINIMAL), ("\t", csv.QUOTE_NONE), ("::", csv.QUOTE_NONE)],
)
def test_read_table_counts_blank_lines(tmp_path: Path, sep: str, quoting: int) -> None:
    # blank, whitespace-only and CRLF lines hold no row but are counted, also before the header
    text = "\n \nu,i\r\n1,2\n\n\t \n3,4\n  \n\n5,6\n\n".replace(",", sep)
    if sep == "\t":
        text = text.replace("\t \n", "  \n")  # a tab is a separator there: that line has fields
    frame = read_table(_write(tmp_path / "a.txt", text), sep=sep, quoting=quoting)
    assert frame[["u", "i"]].to_numpy().tolist() == [["1", "2"], ["3", "4"], ["5", "6"]]
    assert frame["line"].tolist() == [4, 7, 10]
    assert frame.attrs["header_line"] == 3


def test_read_table_lines_of_fields_that_hold_separators_or_span_lines(tmp_path: Path) -> None:
    text = 'u,i\n"a\n\nb",1\n\n,\n"  ",3\n'  # a quoted field over 3 lines; a row of empty fields
    frame = read_table(_write(tmp_path / "a.csv", text), sep=",", quoting=csv.QUOTE_MINIMAL)
    assert frame["u"].tolist() == ["a\n\nb", "", "  "]
    assert frame["line"].tolist() == [2, 6, 7]
    tsv = read_table(_write(tmp_path / "a.tsv", "u\ti\n\t\n \n1\t2\n"), sep="\t")
    assert tsv["line"].tolist() == [2, 4]  # "\t" is a row of two empty fields, " " is blank


def test_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,timestamp\n1,2,3\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert _error(excinfo, path, 1).startswith("missing column 'rating'")


def test_non_numeric_rating(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,2,4,10\n1,3,five,11\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert _error(excinfo, path, 3) == "rating 'five' is not a number"


def test_bad_value_after_blank_lines_names_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,2,4,10\n\n   \n1,3,five,11\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert str(excinfo.value) == f"{path}, line 5: rating 'five' is not a number"


def test_missing_column_after_blank_lines_names_the_header_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "\n\nuser,item,timestamp\n1,2,3\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert str(excinfo.value) == (
        f"{path}, line 3: missing column 'rating' (found: user, item, timestamp)"
    )


def test_non_numeric_timestamp(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,2,4,2020-01-01\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert _error(excinfo, path, 2) == "timestamp '2020-01-01' is not a number"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "the file is empty"), ("user,item,rating,timestamp\n", "the file has a header but no rows")],
)
def test_empty_file(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path / "log.csv", text)
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert _error(excinfo, path, None) == problem


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as excinfo:
        _load(tmp_path / "nope.csv")
    assert _error(excinfo, tmp_path / "nope.csv", None) == "file not found"


def test_unknown_item(tmp_path: Path) -> None:
    log_path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,x,4,10\n1,q,3,11\n")
    items_path = _write(tmp_path / "items.csv", "item,title\nx,Heat\n")
    with pytest.raises(DataError) as excinfo:
        _load(log_path, items_path)
    assert _error(excinfo, log_path, 3) == f"item 'q' is not in the item table {items_path}"


def test_item_listed_twice(tmp_path: Path) -> None:
    log_path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,x,4,10\n")
    items_path = _write(tmp_path / "items.csv", "item,title\nx,Heat\nx,Heat again\n")
    with pytest.raises(DataError) as excinfo:
        _load(log_path, items_path)
    assert _error(excinfo, items_path, 3) == "item 'x' appears twice"


def test_duplicate_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,x,4,10\n1,y,4,12\n1,x,2,11\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    problem = _error(excinfo, path, 4)
    assert problem == "duplicate interaction of user '1' with item 'x' (also on line 2)"


def test_duplicates_keep_last_in_time(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,x,2,50\n1,x,5,40\n1,y,3,45\n")
    data = _load(path, duplicates="last")
    assert data.interactions["rating"].tolist() == [3.0, 2.0]
    assert data.interactions["timestamp"].tolist() == [45, 50]


@pytest.mark.parametrize("rows", [["1,x,2,50", "1,x,5,50"], ["1,x,5,50", "1,x,2,50"]])
def test_duplicates_at_one_time_keep_the_highest_rating(tmp_path: Path, rows: list[str]) -> None:
    text = "user,item,rating,timestamp\n" + "\n".join(["1,x,1,10", *rows, "1,y,3,45"]) + "\n"
    data = _load(_write(tmp_path / "log.csv", text), duplicates="last")
    assert data.interactions["rating"].tolist() == [3.0, 5.0]  # whatever the order of the rows
    assert data.interactions["timestamp"].tolist() == [45, 50]


def test_interactions_at_one_time_are_in_tie_key_order(tmp_path: Path) -> None:
    from recranker.data.dataset import tie_keys

    rows = ["b,z,4,30", "a,y,2,20", "b,x,5,30", "b,y,1,30", "a,x,3,20"]
    frames = []
    for order in (rows, rows[::-1]):
        path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n" + "\n".join(order) + "\n")
        frames.append(_load(path).interactions)
    keys = tie_keys(np.array(["b"] * 3, dtype=object), np.array(["x", "y", "z"], dtype=object))
    assert np.argsort(keys).tolist() == [2, 0, 1]  # z, x, y: the key order is not the id order
    assert frames[0]["user"].tolist() == [0, 0, 1, 1, 1]
    assert frames[0]["item"].tolist() == [0, 1, 2, 0, 1]
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_empty_id(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,x,4,10\n2,,4,11\n")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert _error(excinfo, path, 3) == "empty item id"


def test_wrong_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,Misérables,4,10\n", "latin-1")
    with pytest.raises(DataError) as excinfo:
        _load(path)
    assert _error(excinfo, path, None).startswith("not utf-8 text")


def test_implicit_log(tmp_path: Path) -> None:
    path = _write(tmp_path / "log.csv", "user,item,rating,timestamp\n1,x,2,10\n1,y,5,11\n")
    data = _load(path, implicit=True)
    assert data.implicit
    assert data.interactions["rating"].tolist() == [1.0, 1.0]
    assert data.stats()["liked"] == 2


# ------------------------------------------------------------------------------------ filters
def _log(pairs: str) -> pd.DataFrame:
    """`"a-x a-y"` -> a frame of users a, a and items x, y, with lines 1, 2."""
    users, items = zip(*(pair.split("-") for pair in pairs.split()))
    return pd.DataFrame({"user": users, "item": items, "line": np.arange(1, len(users) + 1)})


def test_k_core_repeats_until_stable() -> None:
    # z has one user, so c drops to one item and goes in a second round
    frame = _log("a-x a-y b-x b-y c-y c-z")
    kept = k_core(frame, 2)
    assert list(zip(kept["user"], kept["item"])) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    assert kept.index.tolist() == [0, 1, 2, 3]


def test_k_core_counts_a_repeated_pair_once() -> None:
    assert len(k_core(_log("a-x a-x b-x"), 2)) == 0
    assert len(k_core(_log("a-x a-y b-x b-y"), 3)) == 0


@pytest.mark.parametrize("core", [0, 1])
def test_k_core_disabled(core: int) -> None:
    frame = _log("a-x b-y")
    assert k_core(frame, core) is frame


def test_apply_k_core_empty_result_is_an_error(tmp_path: Path) -> None:
    expected = r"log.csv: no interactions left after the 3-core filter \(2 before\)"
    with pytest.raises(DataError, match=expected):
        apply_k_core(_log("a-x b-y"), 3, path=tmp_path / "log.csv")


def test_drop_unknown_items() -> None:
    kept = drop_unknown_items(_log("a-x a-q b-x"), pd.DataFrame({"item": ["x"]}), path="log.csv")
    assert kept["line"].tolist() == [1, 3]
    with pytest.raises(DataError) as excinfo:
        drop_unknown_items(_log("a-q"), pd.DataFrame({"item": ["x"]}), path="log.csv")
    assert str(excinfo.value) == (
        "log.csv, line 1: no interaction has its item in the item table (e.g. item 'q')"
    )
