"""RecBole atomic files (`.inter`, `.item`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recranker.data.recbole import load_recbole
from recranker.errors import DataError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "196\t267\t5\t881250000\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "242\tKolya\t1996\tComedy\n"
    "267\tunkonwn\tunkonwn\tunknown\n"
    "302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n"
    "543\tMisérables, Les\t1995\tDrama Musical\n"
)


def _write(directory: Path, name: str, inter: str, item: str | None = None) -> Path:
    (directory / f"{name}.inter").write_text(inter, encoding="utf-8")
    if item is not None:
        (directory / f"{name}.item").write_text(item, encoding="utf-8")
    return directory


def test_explicit_with_items(tmp_path: Path) -> None:
    data = load_recbole(_write(tmp_path, "ml-100k", INTER, ITEM))  # name inferred
    assert data.name == "ml-100k" and not data.implicit
    assert data.user_ids.tolist() == ["186", "196"]
    assert data.item_ids.tolist() == ["242", "267", "302"]
    assert data.interactions["item"].tolist() == [2, 1, 0]
    assert data.interactions["timestamp"].tolist() == [891717742, 881250000, 881250949]
    assert data.interactions["rating"].tolist() == [3.0, 5.0, 3.0]
    assert data.items["title"].tolist() == ["Kolya", "unkonwn", "L.A. Confidential"]
    assert data.items["year"].tolist() == ["1996", "", "1997"]  # "unkonwn" is no year
    assert data.items["genres"].tolist() == ["Comedy", "unknown", "Crime, Film-Noir, Mystery, Thriller"]


def test_utf8_title_and_book_fields(tmp_path: Path) -> None:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t0002005018\t8\t1\n"
    item = (
        "item_id:token\tbook_title:token_seq\tbook_author:token_seq\tpublication_year:token\n"
        "0002005018\tClara Callan\tRichard Bruce Wright\t2001\n"
        "0000000001\tCien años de soledad\tGabriel García Márquez\t1967\n"
    )
    data = load_recbole(_write(tmp_path, "book-crossing", inter, item), "book-crossing")
    assert data.items.loc[0, ["title", "author", "year", "genres"]].tolist() == [
        "Clara Callan",
        "Richard Bruce Wright",
        "2001",
        "",
    ]
    inter += "2\t0000000001\t9\t2\n"
    data = load_recbole(_write(tmp_path, "book-crossing", inter, item))
    assert data.titles([0, 1]) == ["Cien años de soledad", "Clara Callan"]


def test_implicit_when_no_rating(tmp_path: Path) -> None:
    inter = "user_id:token\titem_id:token\ttimestamp:float\nA1\tB2\t1.0\nA1\tB3\t2.0\n"
    data = load_recbole(_write(tmp_path, "clicks", inter))
    assert data.implicit
    assert data.interactions["rating"].tolist() == [1.0, 1.0]
    assert data.titles([0, 1]) == ["item B2", "item B3"]  # no .item file


def test_forced_implicit_ignores_ratings(tmp_path: Path) -> None:
    data = load_recbole(_write(tmp_path, "ml-100k", INTER, ITEM), implicit=True)
    assert data.implicit and data.interactions["rating"].tolist() == [1.0, 1.0, 1.0]


def test_explicit_without_rating_field(tmp_path: Path) -> None:
    _write(tmp_path, "clicks", "user_id:token\titem_id:token\ttimestamp:float\nA1\tB2\t1\n")
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path, implicit=False)
    assert str(excinfo.value) == (
        f"{tmp_path / 'clicks.inter'}, line 1: missing field 'rating' (found: user_id, item_id, timestamp)"
    )


def test_missing_timestamp(tmp_path: Path) -> None:
    _write(tmp_path, "ml", "user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert excinfo.value.line == 1
    assert str(excinfo.value).startswith(f"{tmp_path / 'ml.inter'}, line 1: missing field 'timestamp'")


def test_item_file_without_item_id(tmp_path: Path) -> None:
    _write(tmp_path, "ml", INTER, "movie_title:token_seq\nKolya\n")
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert str(excinfo.value).startswith(f"{tmp_path / 'ml.item'}, line 1: missing field 'item_id'")


def test_unknown_item(tmp_path: Path) -> None:
    _write(tmp_path, "ml", INTER + "186\t999\t4\t891717743\n", ITEM)
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert str(excinfo.value) == (
        f"{tmp_path / 'ml.inter'}, line 5: item '999' is not in the item table {tmp_path / 'ml.item'}"
    )


def test_non_numeric_rating(tmp_path: Path) -> None:
    _write(tmp_path, "ml", INTER.replace("\t5\t", "\tgood\t"))
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'ml.inter'}, line 4: rating 'good' is not a number"


def test_blank_lines_before_a_bad_rating(tmp_path: Path) -> None:
    _write(tmp_path, "ml", INTER + "\n\n" + "186\t242\tgood\t891717743\n")
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'ml.inter'}, line 7: rating 'good' is not a number"


def test_duplicate_row(tmp_path: Path) -> None:
    _write(tmp_path, "ml", INTER + "196\t242\t3\t881250949\n")
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert excinfo.value.line == 5 and "duplicate interaction" in excinfo.value.problem


def test_name_inference_needs_one_inter_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="found: none"):
        load_recbole(tmp_path)
    _write(tmp_path, "a", INTER)
    _write(tmp_path, "b", INTER)
    with pytest.raises(DataError, match="found: a.inter, b.inter"):
        load_recbole(tmp_path)
    assert load_recbole(tmp_path, "b").name == "b"


def test_empty_inter_file(tmp_path: Path) -> None:
    _write(tmp_path, "ml", "")
    with pytest.raises(DataError) as excinfo:
        load_recbole(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'ml.inter'}: the file is empty"
