import numpy as np
import pytest

from recranker.retrieval.popularity import Popularity
from recranker.testing.retrievers import RetrieverContract, synthetic_split


class TestPopularity(RetrieverContract):
    learned = False

    def make(self, seed: int = 0) -> Popularity:
        return Popularity(Popularity.Config(seed=seed))


def test_popularity_ranks_by_liked_count() -> None:
    split = synthetic_split()
    model = Popularity().fit(split, progress=False)
    liked = split.liked_train()
    counts = np.bincount(liked["item"], minlength=split.n_items)
    ranked = model.top_m(split.users[:1], 5, "valid", exclude="none")
    assert list(ranked.scores[0]) == sorted(counts, reverse=True)[:5]


def test_exclude_liked_keeps_seen_disliked_items_rankable() -> None:
    split = synthetic_split()
    model = Popularity().fit(split, progress=False)
    users = split.users
    seen_all, seen_liked = split.seen("test"), split.seen("test", liked_only=True)
    by_liked = model.top_m(users, 30, "test", exclude="liked")
    by_seen = model.top_m(users, 30, "test", exclude="seen")
    disliked_listed = 0
    for row, user in enumerate(users):
        assert not set(by_liked.items[row]) & set(seen_liked[user].indices)
        assert not set(by_seen.items[row]) & set(seen_all[user].indices)
        disliked_listed += len(set(by_liked.items[row]) & set(seen_all[user].indices))
    assert disliked_listed > 0
    with pytest.raises(ValueError, match="exclude must be"):
        model.top_m(users, 3, "test", exclude="all")
