import numpy as np
import pytest

from recranker.candidates import NEGATIVE_GRADE, TrainingPools, assign_folds
from recranker.candidates import CandidateCounts


def test_folds_deal_each_users_interactions_evenly(split) -> None:
    train = split.train
    folds = assign_folds(train, 4, seed=1)
    assert folds.shape == (len(train),) and set(folds) == {0, 1, 2, 3}
    for user in split.users[:20]:
        counts = np.bincount(folds[train["user"].to_numpy() == user], minlength=4)
        assert counts.max() - counts.min() <= 1, counts
    np.testing.assert_array_equal(folds, assign_folds(train, 4, seed=1))
    assert not np.array_equal(folds, assign_folds(train, 4, seed=2))


def test_folds_spread_ratings(split) -> None:
    train = split.train
    folds = assign_folds(train, 2, seed=0)
    liked = train["rating"].to_numpy() >= 4
    for user in split.users[:20]:
        mine = train["user"].to_numpy() == user
        per_fold = np.bincount(folds[mine & liked], minlength=2)
        assert abs(per_fold[0] - per_fold[1]) <= 1  # liked interactions split evenly too


def test_one_fold_is_refused(split) -> None:
    with pytest.raises(ValueError, match="at least 2 folds"):
        assign_folds(split.train, 1, seed=0)


def test_draw_takes_the_held_out_fold_and_fills_with_negatives(split) -> None:
    pools = TrainingPools(split, 3, seed=0)
    counts = CandidateCounts(liked=2, neutral=0, disliked=1, negatives=3)
    train = split.train
    for user in split.users[:25]:
        fold = int(pools.usable_folds(user)[0])
        drawn = pools.draw(user, fold, counts, np.random.default_rng(user))
        assert len(drawn.items) == counts.total == len(set(drawn.items.tolist()))
        rows = train[(train["user"] == user).to_numpy()]
        in_fold = set(rows["item"].to_numpy()[pools.folds[(train["user"] == user).to_numpy()] == fold].tolist())
        rated = drawn.items[drawn.grades != NEGATIVE_GRADE]
        assert set(rated.tolist()) <= in_fold
        assert (drawn.grades[:len(rated)] >= 1).all()
        negatives = drawn.items[drawn.grades == NEGATIVE_GRADE]
        known = set(split.known["item"][split.known["user"] == user].tolist())
        targets = {split.targets.loc[user, "valid_item"], split.targets.loc[user, "test_item"]}
        assert not set(negatives.tolist()) & (known | targets)


def test_history_is_the_other_folds_most_recent_first(split) -> None:
    pools = TrainingPools(split, 3, seed=0)
    user = int(split.users[0])
    rows = pools.rows(user)
    items, ratings = pools.history(user, 1)
    expected = split.train["item"].to_numpy()[rows][pools.folds[rows] != 1][::-1]
    np.testing.assert_array_equal(items, expected)
    times = split.train.set_index("item")["timestamp"][split.train["user"].to_numpy() == user]
    assert list(times.loc[items]) == sorted(times.loc[items], reverse=True)


def test_draws_are_reproducible_per_generator(split) -> None:
    pools = TrainingPools(split, 3, seed=0)
    counts = CandidateCounts(liked=2, disliked=1, negatives=4)
    a = pools.draw(3, 0, counts, np.random.default_rng(7))
    b = pools.draw(3, 0, counts, np.random.default_rng(7))
    np.testing.assert_array_equal(a.items, b.items)


def test_too_many_negatives_is_a_clear_error(split) -> None:
    pools = TrainingPools(split, 3, seed=0)
    with pytest.raises(ValueError, match="negatives asked"):
        pools.negatives(0, split.n_items, np.random.default_rng(0))
