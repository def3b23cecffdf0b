import logging

import numpy as np
import pandas as pd
import pytest

from recranker.data.dataset import Dataset
from recranker.errors import DataError
from recranker.split import LeakageError, Split, assert_before, check_leakage, leave_one_out
from recranker.testing import synthetic_dataset


def make(rows: list[tuple[str, str, int, int]]) -> Dataset:
    log = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"]).astype(str)
    log["line"] = np.arange(2, len(log) + 2)
    return Dataset.from_frames("hand", log, None, log_path="hand.csv")


def code(ds: Dataset, raw: str) -> int:
    return int(np.flatnonzero(ds.item_ids == raw)[0])


def test_targets_are_the_last_two_liked_items_by_time() -> None:
    ds = make(
        [
            ("a", "i1", 5, 10),
            ("a", "i2", 2, 20),
            ("a", "i3", 4, 30),
            ("a", "i4", 1, 40),  # disliked, between the targets: known at test time only
            ("a", "i5", 5, 50),
            ("a", "i6", 3, 60),  # after the test target: dropped
        ]
    )
    split = leave_one_out(ds)
    assert split.target_items("valid").tolist() == [code(ds, "i3")]
    assert split.target_items("test").tolist() == [code(ds, "i5")]
    assert sorted(ds.item_ids[split.train["item"]]) == ["i1", "i2"]
    assert sorted(ds.item_ids[split.history("test")["item"]]) == ["i1", "i2", "i3", "i4"]
    check_leakage(split)


def test_interactions_at_a_targets_time_are_not_history() -> None:
    ds = make([("a", "i1", 5, 10), ("a", "i2", 4, 20), ("a", "i3", 2, 20), ("a", "i4", 5, 30), ("a", "i5", 4, 30)])
    split = leave_one_out(ds)
    assert ds.item_ids[split.target_items("test")[0]] == "i5"  # last in file order among ties
    assert ds.item_ids[split.target_items("valid")[0]] in {"i2"}  # liked, strictly before the test time
    assert ds.item_ids[split.train["item"]].tolist() == ["i1"]  # i3 shares the valid target's time
    assert set(ds.item_ids[split.history("test")["item"]]) == {"i1", "i2", "i3"}  # not i4 (same time as test)
    check_leakage(split)


def test_users_without_enough_liked_items_are_left_out_with_one_warning(caplog) -> None:
    ds = make([("a", "i1", 5, 1), ("a", "i2", 5, 2), ("a", "i3", 5, 3), ("b", "i1", 5, 9)])
    with caplog.at_level(logging.WARNING):
        split = leave_one_out(ds, source="log.csv")
    assert split.users.tolist() == [0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "log.csv" in warnings[0] and "1 of 2 users" in warnings[0] and "'b' with 1 interaction" in warnings[0]
    assert set(split.known["user"]) == {0}


def test_no_splittable_user_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="log.csv: no user has 3 liked interactions"):
        leave_one_out(make([("a", "i1", 5, 1), ("b", "i2", 5, 2)]), source="log.csv")


def test_synthetic_split_has_no_leakage_and_round_trips(tmp_path) -> None:
    split = leave_one_out(synthetic_dataset())
    check_leakage(split)
    split.save(str(tmp_path))
    again = Split.load(str(tmp_path))
    pd.testing.assert_frame_equal(again.known, split.known)
    pd.testing.assert_frame_equal(again.targets, split.targets)
    assert again.dataset.titles([0, 1]) == split.dataset.titles([0, 1])
    seen = split.seen("test")
    for user in split.users[:5]:
        assert split.target_items("test")[split.users.tolist().index(user)] not in seen[user].indices


def test_leakage_check_catches_a_future_interaction() -> None:
    split = leave_one_out(synthetic_dataset())
    user = int(split.users[0])
    late = pd.DataFrame({"user": [user], "item": [0], "timestamp": [int(split.targets.loc[user, "valid_time"])]})
    with pytest.raises(LeakageError, match="at or after its valid target"):
        assert_before(late, split, "valid", "hints")
    target = pd.DataFrame({"user": [user], "item": [int(split.targets.loc[user, "test_item"])], "timestamp": [0]})
    with pytest.raises(LeakageError, match="sees its test target"):
        assert_before(target, split, "test", "prompts")
    bad = Split(split.dataset, split.known, split.targets.assign(valid_time=split.targets["test_time"]))
    with pytest.raises(LeakageError):
        check_leakage(bad)


def test_sequences_are_time_ordered_liked_items() -> None:
    ds = make([("a", "i1", 5, 30), ("a", "i2", 5, 10), ("a", "i3", 1, 20), ("a", "i4", 5, 40), ("a", "i5", 5, 50)])
    split = leave_one_out(ds)
    seq = split.sequences("test")[0]
    assert ds.item_ids[seq].tolist() == ["i2", "i1", "i4"]
    assert ds.item_ids[split.sequences("valid")[0]].tolist() == ["i2", "i1"]
    assert ds.item_ids[split.sequences("valid", liked_only=False)[0]].tolist() == ["i2", "i3", "i1"]


def test_seen_can_be_limited_to_liked_items() -> None:
    ds = make([("a", "i1", 5, 10), ("a", "i2", 1, 20), ("a", "i3", 5, 30), ("a", "i4", 5, 40)])
    split = leave_one_out(ds)
    assert sorted(ds.item_ids[split.seen("test").indices]) == ["i1", "i2", "i3"]
    assert sorted(ds.item_ids[split.seen("test", liked_only=True).indices]) == ["i1", "i3"]
