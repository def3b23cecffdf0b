"""Who is evaluated: the seeded sample of users at each target (valid or test), their candidates from a
backbone and their relevance, and the users the LLM is asked about (those it can change)."""

from __future__ import annotations

import numpy as np

from recranker.config import StudyConfig
from recranker.metrics import covered, single_target_gains
from recranker.split import Split
from recranker.stages.retrieval import load_candidates
from recranker.types import Rankings


def evaluated_users(cfg: StudyConfig, split: Split, target: str) -> np.ndarray:
    """Positions (into `split.users`) of the users evaluated at `target`: all, or a seeded sample
    of `ranking.test_users` / `ranking.valid_users`, ascending."""
    wanted = cfg.ranking.test_users if target == "test" else cfg.ranking.valid_users
    n = len(split.users)
    if wanted is None or wanted >= n:
        return np.arange(n)
    rng = np.random.default_rng([cfg.ranking.seed, 7, 0 if target == "valid" else 1])
    return np.sort(rng.choice(n, size=wanted, replace=False))


def evaluation_population(cfg: StudyConfig, split: Split, backbone: str, target: str) -> tuple[Rankings, dict]:
    """The evaluated users' candidates from `backbone` at `target` and their relevance: the
    target item or, at test with `evaluation.graded`, the future liked items (a user without any gets a
    placeholder item no list holds, so it scores 0). With `ranking.test_covered` (`valid_covered`),
    the users are `covered_sample`'s (one sample per backbone)."""
    candidates = load_candidates(cfg, backbone, target)
    wanted = cfg.ranking.test_covered if target == "test" else cfg.ranking.valid_covered
    if wanted is not None:
        gains = relevance(cfg, split, candidates, np.arange(len(split.users)), target)
        rows = covered_sample(covered(candidates, gains), wanted, [cfg.ranking.seed, 0 if target == "valid" else 1])
        population = candidates.select(rows)
        return population, {int(u): gains[int(u)] for u in population.users}
    rows = evaluated_users(cfg, split, target)
    population = candidates.select(rows)
    return population, relevance(cfg, split, population, rows, target)


def relevance(cfg: StudyConfig, split: Split, population: Rankings, rows: np.ndarray, target: str) -> dict:
    """The relevant items and gains at `target` of `population`, the users at positions `rows` of
    `split.users` (see `evaluation_population`)."""
    if cfg.evaluation.graded and target == "test":
        gains = graded_gains(split, population.users, split.dataset.feedback.liked_min)
        return {u: g or {-1: 1.0} for u, g in gains.items()}
    return single_target_gains(population.users, split.target_items(target)[rows])


def covered_sample(is_covered: np.ndarray, wanted: int, seed: int | list[int]) -> np.ndarray:
    """Positions of a seeded sample of users holding `wanted` covered ones, ascending: the shortest
    prefix of a seeded random order of all users that reaches `wanted` covered users (all users when
    fewer are covered). A uniform sample whose size the coverage decides: a backbone that covers
    fewer targets is evaluated on more users, so each one's conditional metrics rest on `wanted`."""
    order = np.random.default_rng([7, 2, *np.atleast_1d(seed).tolist()]).permutation(len(is_covered))
    reached = np.flatnonzero(np.cumsum(is_covered[order]) >= wanted)
    return np.sort(order if reached.size == 0 else order[:reached[0] + 1])


def llm_candidates(cfg: StudyConfig, split: Split, backbone: str, target: str) -> Rankings:
    """The candidates the LLM reorders at `target`: those of the evaluated users with a relevant item
    among them (`evaluation_population`). For every other user each reordering scores 0, so asking
    the LLM would change no metric."""
    population, gains = evaluation_population(cfg, split, backbone, target)
    keep = covered(population, gains)
    return population.select(keep)


def graded_gains(split, users: np.ndarray, liked_min: float) -> dict:
    """ALRO's graded relevance: per user, the items rated at or after the test target's time with a
    liked rating, gain rating - liked_min + 1 (4 -> 1, 5 -> 2 on a 1-5 scale with liked >= 4)."""
    frame = split.dataset.interactions
    times = split.targets["test_time"]
    future = frame[frame["timestamp"].to_numpy() >= times.reindex(frame["user"]).to_numpy()]
    future = future[future["rating"] >= liked_min]
    gains: dict = {int(u): {} for u in users}
    for u, i, r in zip(future["user"].to_numpy(), future["item"].to_numpy(), future["rating"].to_numpy()):
        if int(u) in gains:
            gains[int(u)][int(i)] = float(r - liked_min + 1)
    return gains
