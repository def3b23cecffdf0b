"""Adaptive user sampling (RecRanker section III; DESIGN section 4).

Which users get an instruction: N user instances drawn from the users of the split (those with
targets), by one of four strategies.

- ``uniform``: N draws with replacement, all users alike (the ablation baseline).
- ``importance``: N draws with probability proportional to ln(number of liked training items).
- ``clustering``: k-means on the users' embeddings (e.g. LightGCN's); each cluster gets a share of
  the N draws proportional to its size, drawn uniformly inside it.
- ``adaptive``: both multisets merged, then N users drawn from the merge with a repetition
  penalty rho (see `penalized_sample`).

Every function takes and returns int64 user codes; one seeded generator drives a whole sample, so
the same config gives the same array.
"""

from __future__ import annotations

import heapq
import math
from typing import Literal

import numpy as np
from pydantic import Field

from recranker.errors import ConfigError
from recranker.settings import Settings
from recranker.split import Split

Strategy = Literal["adaptive", "uniform", "importance", "clustering"]


class SamplingConfig(Settings):
    """How the users that get instructions are drawn."""

    strategy: Strategy = "adaptive"
    instructions: int = Field(5000, ge=1, description="N: sampled user instances (one instruction per task each)")
    clusters: int = Field(10, ge=1, description="k of k-means (clipped to the number of users)")
    rho: float = Field(0.95, gt=0, le=1, description="repetition penalty: a user's c-th draw weighs rho^(c-1)")
    seed: int = Field(0, description="seed of the draws and of k-means")

    @property
    def uses_embeddings(self) -> bool:
        """Whether the strategy clusters users on their embeddings (clustering, adaptive)."""
        return self.strategy in ("adaptive", "clustering")


def liked_train_counts(split: Split) -> np.ndarray:
    """Number of liked training interactions of each user in `split.users` (int64, same order)."""
    users = split.liked_train()["user"].to_numpy(np.int64)
    return np.bincount(users, minlength=split.n_users)[split.users].astype(np.int64)


def importance_weights(counts: np.ndarray) -> np.ndarray:
    """ln(count) per user, the unnormalised importance of RecRanker.

    A user with one liked item (or none) gets weight 0 (ln 1 = 0; ln 0 would be undefined), so
    importance sampling never draws it; the clustering half of the adaptive strategy still can.
    """
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.zeros_like(counts)
    np.log(counts, out=weights, where=counts > 1)
    return weights


def importance_sample(users: np.ndarray, counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` draws of `users` with replacement, with probability proportional to ln(count).

    Raises `ConfigError` when no user has more than one liked item (every weight is 0).
    """
    weights = importance_weights(counts)
    total = weights.sum()
    if not total > 0:
        raise ConfigError(
            "importance sampling needs a user with at least 2 liked training items "
            "(weight ln(count)); none has: use strategy 'uniform' or 'clustering'"
        )
    return rng.choice(np.asarray(users, dtype=np.int64), size=n, replace=True, p=weights / total)


def cluster_users(embeddings: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels (0..k-1) of the rows of `embeddings` (n_users, d); k is clipped to n_users."""
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(embeddings)))
    kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed)
    return kmeans.fit_predict(np.asarray(embeddings, dtype=np.float64)).astype(np.int64)


def cluster_quotas(sizes: np.ndarray, n: int) -> np.ndarray:
    """Draws per cluster, n * size / total rounded by largest remainder so that they sum to `n`.

    Ties of remainders go to the earlier cluster.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    exact = n * sizes / sizes.sum()
    quotas = np.floor(exact).astype(np.int64)
    short = n - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:short]] += 1
    return quotas


def clustering_sample(users: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` draws: each cluster's quota (`cluster_quotas` of the sizes) drawn uniformly with
    replacement among its members; clusters follow each other in label order.
    """
    users = np.asarray(users, dtype=np.int64)
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    quotas = cluster_quotas(sizes, n)
    parts = [rng.choice(users[inverse == c], size=q, replace=True) for c, q in enumerate(quotas) if q]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def penalized_sample(pool: np.ndarray, n: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """`n` users drawn one at a time from the multiset `pool`, each repeat of a user penalised.

    A user's base weight is its multiplicity c_u in `pool`; after it has been drawn k times its
    weight for the next draw is c_u * rho^k, i.e. its c-th draw weighs rho^(c-1) (the "weight
    rho^(c-1) for a user drawn c times" of RecRanker). rho = 1 gives plain draws with probability
    proportional to c_u; rho -> 0 spreads the draws as evenly as possible over the pool's users.

    Readings of the paper's rule that were rejected:
    - a static weight rho^(c_u-1) from the multiplicity in the merged pool: it would favour the
      users that both halves drew *least*, inverting the importance and cluster signals;
    - a weight rho^(j-1) on the j-th copy of a user inside the pool, drawn i.i.d.: a static
      per-user weight (1 - rho^c_u) / (1 - rho) that damps large multiplicities but never reacts
      to how often the final sample has already taken the user.

    The sequential draw runs as an exponential race in O(n log U): each user holds a clock that
    rings after an exponential time with rate equal to its current weight; by memorylessness the
    next clock to ring is user u with probability weight_u / total, which is exactly the next
    draw. Times are kept as logarithms, so tiny rho cannot overflow them. Returns draw order.
    """
    users, mult = np.unique(np.asarray(pool, dtype=np.int64), return_counts=True)
    if len(users) == 0:
        raise ConfigError("cannot draw from an empty pool of users")
    log_rate = np.log(mult.astype(np.float64)).tolist()
    log_rho = math.log(rho)
    with np.errstate(divide="ignore"):  # an exponential of exactly 0 is a tie at -inf, harmless
        log_wait = np.log(rng.standard_exponential(len(users) + n)).tolist()
    clocks = [(log_wait[j] - log_rate[j], j) for j in range(len(users))]
    heapq.heapify(clocks)
    out = np.empty(n, dtype=np.int64)
    for t, wait in enumerate(log_wait[len(users) :]):
        now, j = clocks[0]
        out[t] = users[j]
        log_rate[j] += log_rho
        heapq.heapreplace(clocks, (_log_add(now, wait - log_rate[j]), j))
    return out


def _log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def sample_users(split: Split, config: SamplingConfig, embeddings: np.ndarray | None = None) -> np.ndarray:
    """`config.instructions` user codes of `split.users`, in draw order, by `config.strategy`.

    `embeddings` (n_users, d), indexed by user code (e.g. `LightGCN.user_embeddings()`), are
    needed by the ``clustering`` and ``adaptive`` strategies. Raises `ConfigError` when they are
    missing or have the wrong rows, or when importance sampling finds no user with a weight.
    """
    rng = np.random.default_rng(config.seed)
    users, n = split.users, config.instructions
    if config.strategy == "uniform":
        return rng.choice(users, size=n, replace=True)
    if config.strategy == "importance":
        return importance_sample(users, liked_train_counts(split), n, rng)
    labels = cluster_users(_user_embeddings(split, config, embeddings), config.clusters, config.seed)
    if config.strategy == "clustering":
        return clustering_sample(users, labels, n, rng)
    pool = np.concatenate(
        [importance_sample(users, liked_train_counts(split), n, rng), clustering_sample(users, labels, n, rng)]
    )
    return penalized_sample(pool, n, config.rho, rng)


def _user_embeddings(split: Split, config: SamplingConfig, embeddings: np.ndarray | None) -> np.ndarray:
    """The rows of `embeddings` of the split's users, after checking the shape."""
    if embeddings is None:
        raise ConfigError(
            f"sampling strategy {config.strategy!r} clusters users on their embeddings: pass "
            f"embeddings of shape (n_users={split.n_users}, d), e.g. LightGCN.user_embeddings()"
        )
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != split.n_users:
        raise ConfigError(
            f"sampling strategy {config.strategy!r}: user embeddings must have shape "
            f"(n_users={split.n_users}, d), one row per user code; got {embeddings.shape}"
        )
    return embeddings[split.users]


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative `values`: 0 when all equal, near 1 when one holds all."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    total = x.sum()
    if len(x) == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float(2 * (ranks * x).sum() / (len(x) * total) - (len(x) + 1) / len(x))


def sample_summary(sample: np.ndarray, split: Split) -> dict[str, float | int]:
    """What a sample covers, for the closing note.

    Keys: ``instructions`` (sample size), ``distinct_users``, ``coverage`` (share of the split's
    users drawn at least once), ``max_repeats`` and ``mean_repeats`` (draws per drawn user) and
    ``gini`` of the draws per user over all of the split's users (undrawn ones count as 0).
    """
    sample = np.asarray(sample, dtype=np.int64)
    drawn, repeats = np.unique(sample, return_counts=True)
    if not np.isin(drawn, split.users).all():
        raise ValueError("the sample holds users that have no targets in the split")
    per_user = np.bincount(np.searchsorted(split.users, drawn), weights=repeats, minlength=len(split.users))
    return {
        "instructions": int(len(sample)),
        "distinct_users": int(len(drawn)),
        "coverage": float(len(drawn) / len(split.users)) if len(split.users) else 0.0,
        "max_repeats": int(repeats.max()) if len(repeats) else 0,
        "mean_repeats": float(repeats.mean()) if len(repeats) else 0.0,
        "gini": gini(per_user),
    }
