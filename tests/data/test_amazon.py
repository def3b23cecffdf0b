"""Amazon reviews and metadata as JSON lines (2018 and 2023 releases), plain or gzip."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from recranker.data.amazon import load_amazon
from recranker.errors import DataError


def _review_2018(user: str, item: str, rating: float, time: int) -> dict[str, Any]:
    return {
        "overall": rating,
        "verified": True,
        "reviewTime": "09 13, 2009",
        "reviewerID": user,
        "asin": item,
        "style": {"Format:": " Audio CD"},
        "reviewerName": "J. Doe",
        "reviewText": "Great album.",
        "summary": "Five Stars",
        "unixReviewTime": time,
    }


REVIEWS_2018 = [
    _review_2018("A1", "B01", 5.0, 100),
    _review_2018("A2", "B02", 2.0, 120),
    _review_2018("A1", "B02", 3.0, 200),
    _review_2018("A2", "B01", 4.0, 150),
    _review_2018("A3", "B01", 5.0, 50),  # A3's only review: out in the 2-core
    _review_2018("A1", "B09", 4.0, 90),  # B09 has no metadata: dropped
    _review_2018("A2", "B02", 1.0, 300),  # repeated review: the last one counts
]
META_2018 = [
    {
        "category": ["CDs & Vinyl", "Pop"],
        "title": "Abbey Road &amp; More",
        "brand": "The Beatles",
        "date": "September 26, 1969",
        "asin": "B01",
        "description": ["..."],
    },
    {"category": ["CDs & Vinyl", "Rock"], "title": "Nevermind", "brand": "Nirvana", "date": "",
     "asin": "B02"},
    {"category": [], "title": "Nevermind (repeated row)", "asin": "B02"},
    {"category": ["CDs & Vinyl"], "title": "Never rated", "asin": "B03"},
]


def _lines(records: list[Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def _write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_2018_gzip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reviews = _write(tmp_path / "CDs_and_Vinyl_5.json.gz", _lines(REVIEWS_2018))
    meta = _write(tmp_path / "meta_CDs_and_Vinyl.json.gz", _lines(META_2018))
    with caplog.at_level(logging.INFO):
        data = load_amazon(reviews, meta, core=2)
    assert data.name == "CDs_and_Vinyl_5" and not data.implicit
    assert data.user_ids.tolist() == ["A1", "A2"]
    assert data.item_ids.tolist() == ["B01", "B02"]
    frame = data.interactions
    assert frame["item"].tolist() == [0, 1, 0, 1]
    assert frame["timestamp"].tolist() == [100, 200, 150, 300]
    assert frame["rating"].tolist() == [5.0, 3.0, 4.0, 1.0]
    items = data.items
    assert items["title"].tolist() == ["Abbey Road & More", "Nevermind"]
    assert items["genres"].tolist() == ["CDs & Vinyl, Pop", "CDs & Vinyl, Rock"]
    assert items["author"].tolist() == ["The Beatles", "Nirvana"]
    assert items["year"].tolist() == ["1969", ""]
    assert "dropped 1 repeated metadata rows" in caplog.text
    assert "dropped 1 of 7 interactions whose item is not in the item table" in caplog.text
    assert "kept the latest of 2 repeated user-item interactions" in caplog.text


def test_without_metadata_and_core(tmp_path: Path) -> None:
    reviews = _write(tmp_path / "reviews.json", _lines(REVIEWS_2018))
    data = load_amazon(reviews, core=0, name="cds")
    assert data.name == "cds"
    assert (data.n_users, data.n_items, len(data.interactions)) == (3, 3, 6)
    assert data.titles([0, 2]) == ["item B01", "item B09"]


def test_default_core_is_5(tmp_path: Path) -> None:
    reviews = _write(tmp_path / "reviews.json", _lines(REVIEWS_2018))
    with pytest.raises(DataError, match=r"no interactions left after the 5-core filter \(7 before\)"):
        load_amazon(reviews)


def test_2023(tmp_path: Path) -> None:
    reviews = [
        {"rating": 4.0, "title": "Classic", "text": "...", "images": [], "asin": "0441013597",
         "parent_asin": "P1", "user_id": "U1", "timestamp": 1588687728923, "helpful_vote": 0,
         "verified_purchase": True},
        {"rating": 2.0, "title": "Meh", "text": "...", "images": [], "asin": "B2",
         "user_id": "U2", "timestamp": 1588687700000, "helpful_vote": 1, "verified_purchase": False},
    ]  # fmt: skip
    meta = [
        {"main_category": "Books", "title": "Dune", "categories": ["Books", "Science Fiction"],
         "parent_asin": "P1", "author": {"name": "Frank Herbert", "about": []}, "details": {}},
        {"main_category": "Books", "title": "Other", "categories": [], "parent_asin": "B2",
         "store": "Ace", "details": {}},
    ]  # fmt: skip
    data = load_amazon(
        _write(tmp_path / "Books.jsonl", _lines(reviews)),
        _write(tmp_path / "meta_Books.jsonl", _lines(meta)),
        core=0,
    )
    assert data.name == "Books"
    assert data.item_ids.tolist() == ["B2", "P1"]  # parent_asin, else asin
    assert data.interactions["timestamp"].tolist() == [1588687728, 1588687700]  # ms -> s
    assert data.interactions["rating"].tolist() == [4.0, 2.0]
    assert data.items["author"].tolist() == ["Ace", "Frank Herbert"]
    assert data.items["genres"].tolist() == ["Books", "Books, Science Fiction"]


def test_bad_json_line(tmp_path: Path) -> None:
    text = _lines(REVIEWS_2018[:2]) + '{"overall": 5.0, "reviewerID": "A9", \n'
    reviews = _write(tmp_path / "reviews.json.gz", text)
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews)
    assert excinfo.value.line == 3
    assert str(excinfo.value) == (
        f"{reviews}, line 3: bad JSON at column 38: Expecting property name enclosed in double quotes"
    )


def test_bad_json_after_blank_lines_names_its_line(tmp_path: Path) -> None:
    text = _lines(REVIEWS_2018[:1]) + "\n  \n" + _lines(REVIEWS_2018[1:2]) + '{"asin": "B0\n'
    reviews = _write(tmp_path / "reviews.json", text)
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews)
    assert str(excinfo.value) == (
        f"{reviews}, line 5: bad JSON at column 10: Unterminated string starting at"
    )


def test_bad_json_in_metadata(tmp_path: Path) -> None:
    reviews = _write(tmp_path / "reviews.json", _lines(REVIEWS_2018))
    meta = _write(tmp_path / "meta.json", _lines(META_2018[:1]) + "{'asin': 'B02'}\n")
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews, meta)
    assert str(excinfo.value) == (
        f"{meta}, line 2: bad JSON at column 2: Expecting property name enclosed in double quotes"
    )


def test_not_an_object(tmp_path: Path) -> None:
    reviews = _write(tmp_path / "reviews.json", "[1, 2]\n")
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews)
    assert str(excinfo.value) == f"{reviews}, line 1: expected a JSON object, got list"


def test_missing_field(tmp_path: Path) -> None:
    record = _review_2018("A1", "B01", 5.0, 100)
    del record["unixReviewTime"]
    reviews = _write(tmp_path / "reviews.json", _lines([*REVIEWS_2018[:3], record]))
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews)
    assert str(excinfo.value) == f"{reviews}, line 4: missing field 'unixReviewTime'"


def test_non_numeric_rating(tmp_path: Path) -> None:
    records = [*REVIEWS_2018[:1], _review_2018("A2", "B1", "five", 9)]
    reviews = _write(tmp_path / "reviews.json", _lines(records))
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews)
    assert str(excinfo.value) == f"{reviews}, line 2: rating 'five' is not a number"


def test_empty_file(tmp_path: Path) -> None:
    reviews = _write(tmp_path / "reviews.json", "\n")
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews)
    assert str(excinfo.value) == f"{reviews}: no interactions: the file is empty"


def test_no_reviewed_item_in_metadata(tmp_path: Path) -> None:
    reviews = _write(tmp_path / "reviews.json", _lines(REVIEWS_2018[5:6]))
    meta = _write(tmp_path / "meta.json", _lines(META_2018))
    with pytest.raises(DataError) as excinfo:
        load_amazon(reviews, meta)
    assert str(excinfo.value) == (
        f"{reviews}, line 1: no interaction has its item in the item table (e.g. item 'B09')"
    )


def test_corrupt_gzip(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.json.gz"
    reviews.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_amazon(reviews)
