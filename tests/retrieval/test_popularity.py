import numpy as np

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
    ranked = model.top_m(split.users[:1], 5, "valid", exclude_seen=False)
    assert list(ranked.scores[0]) == sorted(counts, reverse=True)[:5]
