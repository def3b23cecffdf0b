"""Checks on the real default data; skipped until `recranker fetch ml-100k` has run."""

import pytest

from recranker import assets

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ml100k():
    if not assets.is_fetched("ml-100k"):
        pytest.skip("ml-100k not fetched")
    from recranker.data.registry import load_dataset

    return load_dataset("ml-100k", assets.require("ml-100k"))


def test_ml100k_statistics(ml100k) -> None:
    stats = ml100k.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["liked"] == 55375 and stats["disliked"] == 17480
    assert ml100k.titles([0])[0] and ml100k.items["year"].str.len().gt(0).mean() > 0.99


def test_ml100k_split_is_leak_free(ml100k) -> None:
    from recranker.split import check_leakage, leave_one_out

    split = leave_one_out(ml100k)
    check_leakage(split)
    assert len(split.users) > 900
    assert (split.targets["valid_time"] < split.targets["test_time"]).all()
