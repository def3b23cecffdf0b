import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recranker import assets
from recranker.data.csvlog import load_csv
from recranker.data.dataset import Dataset
from recranker.data.registry import load_dataset
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
    assert ds.item_ids[split.target_items("test")[0]] == by_tie_key("a", ["i4", "i5"])[-1]  # the last of the ties
    assert ds.item_ids[split.target_items("valid")[0]] in {"i2"}  # liked, strictly before the test time
    assert ds.item_ids[split.train["item"]].tolist() == ["i1"]  # i3 shares the valid target's time
    assert set(ds.item_ids[split.history("test")["item"]]) == {"i1", "i2", "i3"}  # not i4 (same time as test)
    check_leakage(split)


def by_tie_key(user: str, items: list[str]) -> list[str]:
    """`items` in the order `Dataset` gives `user`'s interactions at one time."""
    from recranker.data.dataset import tie_keys

    keys = tie_keys(np.array([user] * len(items), dtype=object), np.array(items, dtype=object))
    return [items[k] for k in np.argsort(keys, kind="stable")]


def test_ties_in_time_go_by_the_tie_key_whatever_the_file_order() -> None:
    rows = [
        ("a", "i1", 5, 10),
        ("a", "i3", 4, 20),
        ("a", "i2", 5, 20),
        ("a", "i5", 4, 30),
        ("a", "i4", 5, 30),
    ]
    at20, at30 = by_tie_key("a", ["i2", "i3"]), by_tie_key("a", ["i4", "i5"])
    for order in (rows, rows[::-1]):
        ds = make(order)
        split = leave_one_out(ds)
        assert ds.item_ids[split.target_items("test")].tolist() == [at30[-1]]
        assert ds.item_ids[split.target_items("valid")].tolist() == [at20[-1]]
        assert ds.item_ids[split.sequences("valid")[0]].tolist() == ["i1"]
        assert ds.item_ids[split.sequences("test", liked_only=False)[0]].tolist() == ["i1", *at20]


def _tied_log() -> list[str]:
    """CSV rows of 8 users with 10 interactions each at 4 distinct times: many ties in time."""
    rng = np.random.default_rng(1)
    rows = []
    for user in range(8):
        items = rng.choice(30, size=10, replace=False)
        times = rng.integers(1, 5, size=10) * 100
        ratings = rng.integers(1, 6, size=10)
        rows += [f"u{user},i{item},{rating},{time}" for item, rating, time in zip(items, ratings, times)]
    return rows


def _split_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_split_does_not_depend_on_the_row_order(tmp_path: Path) -> None:
    rows = _tied_log()
    shuffled = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    splits, files = [], []
    for name, order in (("file", rows), ("reversed", rows[::-1]), ("shuffled", shuffled)):
        (tmp_path / name).mkdir()
        log = tmp_path / name / "log.csv"
        log.write_text("user,item,rating,timestamp\n" + "\n".join(order) + "\n")
        split = leave_one_out(load_csv(log))
        split.save(str(tmp_path / name / "split"))
        splits.append(split)
        files.append(_split_files(tmp_path / name / "split"))
    assert len(splits[0].users) >= 4
    for split, saved in zip(splits[1:], files[1:]):
        pd.testing.assert_frame_equal(split.dataset.interactions, splits[0].dataset.interactions)
        pd.testing.assert_frame_equal(split.targets, splits[0].targets)
        pd.testing.assert_frame_equal(split.known, splits[0].known)
        assert saved == files[0]
    assert sorted(files[0]) == ["dataset.json", "interactions.npz", "split.npz"]


@pytest.mark.slow
def test_ml100k_split_does_not_depend_on_the_row_order(tmp_path: Path) -> None:
    if not assets.is_fetched("ml-100k"):
        pytest.skip("ml-100k not fetched")
    source = assets.require("ml-100k")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    log_name = "u.data" if (source / "u.data").exists() else "ml-100k.inter"
    for name in ("u.item", "ml-100k.item"):
        if (source / name).exists():
            (shuffled / name).write_bytes((source / name).read_bytes())
    lines = [line.rstrip(b"\r\n") + b"\n" for line in (source / log_name).read_bytes().splitlines()]
    header = lines[:1] if log_name.endswith(".inter") else []
    body = lines[len(header):]
    order = np.random.default_rng(0).permutation(len(body))
    (shuffled / log_name).write_bytes(b"".join(header + [body[i] for i in order]))

    splits = [leave_one_out(load_dataset("ml-100k", folder)) for folder in (source, shuffled)]
    pd.testing.assert_frame_equal(splits[1].dataset.interactions, splits[0].dataset.interactions)
    pd.testing.assert_frame_equal(splits[1].targets, splits[0].targets)
    for split, name in zip(splits, ("a", "b")):
        split.save(str(tmp_path / name))
    assert _split_files(tmp_path / "a") == _split_files(tmp_path / "b")


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
