"""`load_dataset`: formats by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recranker.data.dataset import Feedback
from recranker.data.registry import FORMATS, load_dataset
from recranker.errors import ConfigError


def test_formats() -> None:
    assert list(FORMATS) == ["ml-100k", "ml-1m", "bookcrossing", "amazon", "recbole", "csv"]


def test_csv_with_items_path(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("user,item,rating,timestamp\nu1,i1,5,1\n")
    items = tmp_path / "items.csv"
    items.write_text("item,title\ni1,Heat\n")
    data = load_dataset("csv", log, items_path=items, feedback=Feedback(liked_min=5.0))
    assert data.titles([0]) == ["Heat"]
    assert data.feedback.liked_min == 5.0


def test_amazon_with_meta_path(tmp_path: Path) -> None:
    reviews = tmp_path / "Music.json"
    review = {"reviewerID": "A", "asin": "B", "overall": 4, "unixReviewTime": 7}
    reviews.write_text(json.dumps(review) + "\n")
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"asin": "B", "title": "Blue"}) + "\n")
    data = load_dataset("amazon", str(reviews), meta_path=meta, core=0)
    assert data.name == "Music" and data.titles([0]) == ["Blue"]


def test_ml_100k_and_recbole(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n")
    assert load_dataset("ml-100k", tmp_path).name == "ml-100k"
    assert load_dataset("recbole", tmp_path, implicit=True).implicit


def test_unknown_format() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_dataset("movielens", "data")
    assert str(excinfo.value) == (
        "unknown dataset format 'movielens'; "
        "known formats: ml-100k, ml-1m, bookcrossing, amazon, recbole, csv"
    )


def test_unknown_option() -> None:
    expected = "dataset format 'ml-1m': got an unexpected keyword argument 'core'"
    with pytest.raises(ConfigError, match=expected):
        load_dataset("ml-1m", "data", core=5)


def test_home_is_expanded_in_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "log.csv").write_text("user,item,rating,timestamp\nu1,i1,5,1\n")
    (tmp_path / "items.csv").write_text("item,title\ni1,Heat\n")
    data = load_dataset("csv", "~/log.csv", items_path="~/items.csv")
    assert data.titles([0]) == ["Heat"]
