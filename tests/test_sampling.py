import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from recranker.errors import ConfigError
from recranker.sampling import (
    SamplingConfig,
    cluster_quotas,
    cluster_users,
    clustering_sample,
    gini,
    importance_sample,
    importance_weights,
    liked_train_counts,
    penalized_sample,
    sample_summary,
    sample_users,
)
from recranker.testing.retrievers import synthetic_split

STRATEGIES = ["adaptive", "uniform", "importance", "clustering"]


def embeddings(seed: int = 0, d: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(synthetic_split().n_users, d))


# ----------------------------------------------------------------------------- config and API
def test_config_defaults_and_validation() -> None:
    config = SamplingConfig()
    assert (config.strategy, config.instructions, config.clusters, config.rho) == ("adaptive", 5000, 10, 0.95)
    for bad in ({"rho": 0}, {"rho": 1.5}, {"instructions": 0}, {"clusters": 0}, {"strategy": "greedy"}, {"typo": 1}):
        with pytest.raises(ValidationError):
            SamplingConfig(**bad)
    with pytest.raises(ValidationError):
        config.rho = 2.0
    assert SamplingConfig(**config.model_dump()) == config


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sample_is_seeded_and_drawn_from_the_split_users(strategy: str) -> None:
    split = synthetic_split()
    config = SamplingConfig(strategy=strategy, instructions=300, clusters=4, seed=3)
    first = sample_users(split, config, embeddings())
    again = sample_users(split, config.model_copy(), embeddings())
    other = sample_users(split, config.model_copy(update={"seed": 4}), embeddings())
    assert first.dtype == np.int64 and first.shape == (300,)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.isin(first, split.users).all()


def test_liked_train_counts_match_the_liked_training_rows() -> None:
    split = synthetic_split()
    counts = liked_train_counts(split)
    liked = split.liked_train()
    assert counts.shape == split.users.shape
    for user, count in zip(split.users[:10], counts[:10]):
        assert count == (liked["user"] == user).sum() >= 1


# ----------------------------------------------------------------------------- importance
def test_importance_weights_are_ln_count_and_zero_for_one_liked_item() -> None:
    np.testing.assert_allclose(importance_weights(np.array([1, 2, 10, 0])), [0, np.log(2), np.log(10), 0])


def test_importance_frequencies_track_ln_count() -> None:
    users = np.array([10, 11, 12, 13, 14, 15], dtype=np.int64)
    counts = np.array([1, 2, 3, 8, 30, 1])
    n = 200_000
    sample = importance_sample(users, counts, n, np.random.default_rng(0))
    observed = np.array([(sample == u).sum() for u in users])
    assert observed[0] == observed[5] == 0  # one liked item: never drawn
    expected = n * importance_weights(counts) / importance_weights(counts).sum()
    live = expected > 0
    chi2 = (((observed - expected) ** 2)[live] / expected[live]).sum()
    assert chi2 < 20.5  # 99.9% quantile of chi-square with 3 degrees of freedom is 16.3


@given(st.lists(st.integers(0, 40), min_size=1, max_size=30), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_importance_never_draws_users_with_at_most_one_liked_item(counts: list[int], seed: int) -> None:
    counts_arr = np.array(counts)
    users = np.arange(len(counts), dtype=np.int64)
    if (counts_arr <= 1).all():
        with pytest.raises(ConfigError, match="at least 2 liked"):
            importance_sample(users, counts_arr, 50, np.random.default_rng(seed))
        return
    sample = importance_sample(users, counts_arr, 50, np.random.default_rng(seed))
    assert len(sample) == 50
    assert (counts_arr[sample] > 1).all()


# ----------------------------------------------------------------------------- clustering
@given(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.integers(1, 3000))
@settings(max_examples=100, deadline=None)
def test_cluster_quotas_follow_sizes_and_sum_to_n(sizes: list[int], n: int) -> None:
    quotas = cluster_quotas(np.array(sizes), n)
    exact = n * np.array(sizes) / sum(sizes)
    assert quotas.sum() == n
    assert (np.abs(quotas - np.round(exact)) <= 1).all()
    assert (np.abs(quotas - exact) < 1).all()


@given(st.lists(st.integers(0, 5), min_size=1, max_size=60), st.integers(1, 500), st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_clustering_sample_draws_each_cluster_its_quota(labels: list[int], n: int, seed: int) -> None:
    labels_arr = np.array(labels)
    users = np.arange(100, 100 + len(labels), dtype=np.int64)
    sample = clustering_sample(users, labels_arr, n, np.random.default_rng(seed))
    assert len(sample) == n
    clusters, sizes = np.unique(labels_arr, return_counts=True)
    drawn_labels = labels_arr[sample - 100]
    per_cluster = np.array([(drawn_labels == c).sum() for c in clusters])
    np.testing.assert_array_equal(per_cluster, cluster_quotas(sizes, n))


def test_cluster_users_is_seeded_and_clips_k() -> None:
    points = np.random.default_rng(0).normal(size=(30, 4))
    labels = cluster_users(points, 5, seed=1)
    assert labels.shape == (30,) and set(labels) == set(range(5))
    np.testing.assert_array_equal(labels, cluster_users(points, 5, seed=1))
    assert len(set(cluster_users(points[:3], 10, seed=0))) == 3


def test_cluster_users_finds_well_separated_groups() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]])
    points = np.repeat(centres, [5, 10, 15], axis=0) + rng.normal(scale=0.1, size=(30, 2))
    labels = cluster_users(points, 3, seed=0)
    assert sorted(np.bincount(labels)) == [5, 10, 15]


# ----------------------------------------------------------------------------- repetition penalty
def test_penalized_rho_one_draws_proportionally_to_multiplicity() -> None:
    pool = np.array([7, 7, 7, 8, 9, 9])  # multiplicities 3, 1, 2
    sample = penalized_sample(pool, 60_000, 1.0, np.random.default_rng(0))
    freq = np.array([(sample == u).mean() for u in (7, 8, 9)])
    np.testing.assert_allclose(freq, [3 / 6, 1 / 6, 2 / 6], atol=0.01)


def test_penalized_tiny_rho_spreads_draws_evenly() -> None:
    for seed in range(20):
        pool = np.array([1] * 50 + [2] * 3 + [3])
        sample = penalized_sample(pool, 10, 1e-12, np.random.default_rng(seed))
        counts = np.bincount(sample, minlength=4)[1:]
        assert counts.max() - counts.min() <= 1, counts
        # every user is drawn once before any is drawn twice
        assert sorted(sample[:3]) == [1, 2, 3]


def test_penalized_tiny_rho_survives_many_repeats() -> None:
    sample = penalized_sample(np.array([4, 5]), 2000, 1e-30, np.random.default_rng(0))
    assert np.bincount(sample).tolist()[4:] == [1000, 1000]


def test_penalized_matches_the_hand_computed_two_draw_law() -> None:
    # pool {a: 2, b: 1}, rho = 0.5. P(a, a) = 2/3 * 2*0.5/(2*0.5 + 1) = 1/3; P(a, b) = 1/3;
    # P(b, a) = 1/3 * 2/(2 + 0.5) = 4/15; P(b, b) = 1/3 * 0.5/(2 + 0.5) = 1/15.
    rng = np.random.default_rng(0)
    trials = 20_000
    seen = {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 0}
    for _ in range(trials):
        first, second = penalized_sample(np.array([0, 0, 1]), 2, 0.5, rng)
        seen[(int(first), int(second))] += 1
    expected = {(0, 0): 1 / 3, (0, 1): 1 / 3, (1, 0): 4 / 15, (1, 1): 1 / 15}
    for key, p in expected.items():
        assert abs(seen[key] / trials - p) < 0.015, (key, seen[key] / trials, p)


def test_penalty_lowers_repeats_on_the_same_pool() -> None:
    rng = np.random.default_rng(0)
    pool = rng.choice(200, size=4000, p=rng.dirichlet(np.full(200, 0.3)))  # skewed multiplicities
    stats = {}
    for rho in (1.0, 0.95, 0.5):
        maxima, squares = [], []
        for seed in range(5):
            counts = np.bincount(penalized_sample(pool, 2000, rho, np.random.default_rng(seed)))
            maxima.append(counts.max())
            squares.append((counts.astype(np.int64) ** 2).sum())
        stats[rho] = (np.mean(maxima), np.mean(squares))
    assert stats[0.95][0] < stats[1.0][0] and stats[0.95][1] < stats[1.0][1]
    assert stats[0.5][0] < stats[0.95][0] and stats[0.5][1] < stats[0.95][1]


@given(st.lists(st.integers(0, 20), min_size=1, max_size=80), st.integers(1, 200), st.floats(0.01, 1.0))
@settings(max_examples=60, deadline=None)
def test_penalized_draws_n_users_of_the_pool(pool: list[int], n: int, rho: float) -> None:
    pool_arr = np.array(pool, dtype=np.int64)
    sample = penalized_sample(pool_arr, n, rho, np.random.default_rng(0))
    assert sample.shape == (n,) and np.isin(sample, pool_arr).all()
    np.testing.assert_array_equal(sample, penalized_sample(pool_arr, n, rho, np.random.default_rng(0)))


def test_adaptive_covers_more_users_than_its_unpenalized_merge() -> None:
    split = synthetic_split()
    base = SamplingConfig(instructions=2000, clusters=4)
    penalized = sample_summary(sample_users(split, base.model_copy(update={"rho": 0.5}), embeddings()), split)
    plain = sample_summary(sample_users(split, base.model_copy(update={"rho": 1.0}), embeddings()), split)
    assert penalized["gini"] < plain["gini"]
    assert penalized["max_repeats"] < plain["max_repeats"]


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("strategy", ["adaptive", "clustering"])
def test_missing_or_misshapen_embeddings_are_clear_errors(strategy: str) -> None:
    split = synthetic_split()
    config = SamplingConfig(strategy=strategy, instructions=10)
    with pytest.raises(ConfigError, match="pass embeddings"):
        sample_users(split, config)
    with pytest.raises(ConfigError, match=r"shape \(n_users=80, d\).*\(79, 8\)"):
        sample_users(split, config, embeddings()[:-1])
    with pytest.raises(ConfigError, match="one row per user code"):
        sample_users(split, config, np.zeros(80))


@pytest.mark.parametrize("strategy", ["uniform", "importance"])
def test_strategies_without_clusters_need_no_embeddings(strategy: str) -> None:
    assert len(sample_users(synthetic_split(), SamplingConfig(strategy=strategy, instructions=7))) == 7


def test_empty_pool_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="empty pool"):
        penalized_sample(np.zeros(0, dtype=np.int64), 3, 0.9, np.random.default_rng(0))


# ----------------------------------------------------------------------------- summary
def test_gini_by_hand() -> None:
    assert gini(np.array([3, 3, 3])) == 0.0
    assert gini(np.array([0, 0, 0, 4])) == pytest.approx(0.75)
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # mean abs difference 1 / (2 * mean 2)
    assert gini(np.zeros(3)) == 0.0


def test_sample_summary_by_hand() -> None:
    split = synthetic_split()
    a, b, c = split.users[:3]
    summary = sample_summary(np.array([a, a, a, b, c, c]), split)
    assert summary["instructions"] == 6 and summary["distinct_users"] == 3
    assert summary["coverage"] == pytest.approx(3 / len(split.users))
    assert summary["max_repeats"] == 3 and summary["mean_repeats"] == pytest.approx(2.0)
    assert 0.9 < summary["gini"] < 1.0
    with pytest.raises(ValueError, match="no targets"):
        sample_summary(np.array([split.n_users + 5]), split)
