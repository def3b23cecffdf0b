"""A plain CSV log with an optional item table."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from recranker.data.csvlog import load_csv
from recranker.errors import DataError

LOG = "user,item,rating,timestamp\nu1,i1,4,100\nu1,i2,2,50\nu2,i1,5,70\n"
ITEMS = (
    "item,title,genres,year,author,price\n"
    'i1,"Heat, The","Crime, Drama",1995,Michael Mann,9.99\n'
    'i2,"Say ""Anything""",Romance,1989,,4.99\n'
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_log_and_items(tmp_path: Path) -> None:
    data = load_csv(_write(tmp_path / "my-log.csv", LOG), _write(tmp_path / "items.csv", ITEMS))
    assert data.name == "my-log" and not data.implicit
    assert data.user_ids.tolist() == ["u1", "u2"]
    frame = data.interactions
    assert frame["item"].tolist() == [1, 0, 0]
    assert frame["timestamp"].tolist() == [50, 100, 70]
    assert frame["rating"].tolist() == [2.0, 4.0, 5.0]
    assert data.items["title"].tolist() == ["Heat, The", 'Say "Anything"']
    assert data.items["genres"].tolist() == ["Crime, Drama", "Romance"]
    assert data.items["year"].tolist() == ["1995", "1989"]
    assert data.items["author"].tolist() == ["Michael Mann", ""]
    assert list(data.items.columns) == ["title", "genres", "year", "author"]


def test_implicit_without_rating_and_other_separator(tmp_path: Path) -> None:
    log = _write(tmp_path / "clicks.tsv", "user\titem\ttimestamp\nu1\ti1\t3\nu1\ti2\t1\n")
    data = load_csv(log, name="clicks", sep="\t", implicit=True)
    assert data.name == "clicks" and data.implicit
    assert data.interactions["item"].tolist() == [1, 0]
    assert data.interactions["rating"].tolist() == [1.0, 1.0]
    assert data.titles([0, 1]) == ["item i1", "item i2"]


def test_missing_rating_column(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", "user,item,timestamp\nu1,i1,3\n")
    with pytest.raises(DataError) as excinfo:
        load_csv(log)
    assert str(excinfo.value) == f"{log}, line 1: missing column 'rating' (found: user, item, timestamp)"


def test_missing_title_column(tmp_path: Path) -> None:
    items = _write(tmp_path / "items.csv", "item,name\ni1,Heat\n")
    with pytest.raises(DataError) as excinfo:
        load_csv(_write(tmp_path / "log.csv", LOG), items)
    assert str(excinfo.value) == f"{items}, line 1: missing column 'title' (found: item, name)"


@pytest.mark.parametrize("blank, line", [("", 5), ("\n  \n", 7)])  # blank lines count in the line number
def test_non_numeric_rating(tmp_path: Path, blank: str, line: int) -> None:
    log = _write(tmp_path / "log.csv", LOG + blank + "u2,i2,N/A,80\n")
    with pytest.raises(DataError) as excinfo:
        load_csv(log)
    assert str(excinfo.value) == f"{log}, line {line}: rating 'N/A' is not a number"


def test_blank_lines_in_a_gzip_log(tmp_path: Path) -> None:
    log = tmp_path / "log.csv.gz"
    log.write_bytes(gzip.compress((LOG + "\n" + "u2,i2,N/A,80\n").encode()))
    with pytest.raises(DataError) as excinfo:
        load_csv(log)
    assert str(excinfo.value) == f"{log}, line 6: rating 'N/A' is not a number"


def test_item_listed_twice_after_blank_lines_and_a_title_over_two_lines(tmp_path: Path) -> None:
    items = _write(tmp_path / "items.csv", 'item,title\ni1,Heat\n\ni2,"Say\nAnything"\ni1,Heat again\n')
    with pytest.raises(DataError) as excinfo:
        load_csv(_write(tmp_path / "log.csv", LOG), items)
    assert str(excinfo.value) == f"{items}, line 6: item 'i1' appears twice"


def test_unknown_item(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", LOG + "u2,i7,3,80\n")
    items = _write(tmp_path / "items.csv", ITEMS)
    with pytest.raises(DataError) as excinfo:
        load_csv(log, items)
    assert str(excinfo.value) == f"{log}, line 5: item 'i7' is not in the item table {items}"


def test_duplicate_row(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", LOG + "u1,i2,2,50\n")
    with pytest.raises(DataError) as excinfo:
        load_csv(log)
    assert str(excinfo.value) == (
        f"{log}, line 5: duplicate interaction of user 'u1' with item 'i2' (also on line 3)"
    )


def test_empty_file(tmp_path: Path) -> None:
    log = _write(tmp_path / "log.csv", "")
    with pytest.raises(DataError) as excinfo:
        load_csv(log)
    assert str(excinfo.value) == f"{log}: the file is empty"
