"""RecRanker's utilities of each task and the hybrid ranking (DESIGN section 7).

For a user's candidates in the backbone's order (column r is backbone rank r, 0-based), with the
constants `UtilityConstants` (C_ret 0.05, C1 1, C2 0.5, C3 0.025 as in the official code) and
the listwise answer's length top (`prompts.listwise_top`, 5 as in the official code):

    U_retrieval[r] = C_ret * (m - r)
    U_point        = U_retrieval + C1 * E[rating]
    U_pair         = U_retrieval + sum over the asked pairs of: C2 to the winner when both orders
                     agree (P(Yes) > 0.5 for "a over b" and <= 0.5 for "b over a", or the reverse),
                     C2 / 2 to each item when they disagree
    U_list         = U_retrieval + C3 * (top - p) for the item at position p < top (0-based)
    U_hybrid       = a1 U_point + a2 U_pair + a3 U_list          (a1 + a2 + a3 = 1)

Bootstrapping averages the listwise term over the shuffled passes. Every system's list is
`Rankings.from_scores(users, items, U)` (stable: ties keep the backbone's order).
"""

from __future__ import annotations

import numpy as np

from recranker.metrics import Measure, per_user
from recranker.ranking.config import UtilityConstants
from recranker.ranking.llm import RankerOutputs
from recranker.types import Rankings


def retrieval_utility(n: int, m: int, c: UtilityConstants) -> np.ndarray:
    """(n, m) C_ret * (m - r)."""
    return np.tile(c.retrieval * (m - np.arange(m, dtype=np.float64)), (n, 1))


def pairwise_bonus(out: RankerOutputs, c: UtilityConstants) -> np.ndarray:
    """(U, m) the pairwise term: C2 to agreed winners, C2/2 to both items of a disagreeing pair."""
    n, m = out.items.shape
    bonus = np.zeros((n, m))
    if np.isnan(out.pair_yes).all():
        return bonus
    rows = np.arange(n)
    for p, (a, b) in enumerate(out.pairs):
        a_wins_first = out.pair_yes[:, p, 0] > 0.5  # "a over b?" Yes
        a_wins_second = out.pair_yes[:, p, 1] <= 0.5  # "b over a?" No
        agree = a_wins_first == a_wins_second
        winner = np.where(a_wins_first, a, b)
        bonus[rows[agree], winner[agree]] += c.pairwise
        bonus[~agree, a] += c.pairwise / 2
        bonus[~agree, b] += c.pairwise / 2
    return bonus


def listwise_bonus(ranks: np.ndarray, c: UtilityConstants, top: int) -> np.ndarray:
    """(..., m) C3 * (top - p) for positions p < top, from each column's position p."""
    return np.where(ranks < top, c.listwise * (top - ranks), 0.0)


def logit_ranks(logprobs: np.ndarray) -> np.ndarray:
    """Positions of columns ordered by descending first-step log-probability (ties: backbone order)."""
    order = np.argsort(-logprobs, axis=-1, kind="stable")
    return np.argsort(order, axis=-1, kind="stable")


def utilities(out: RankerOutputs, c: UtilityConstants, top: int, listwise: str = "generate") -> dict[str, np.ndarray]:
    """(U, m) utilities of each available single-task system: pointwise, pairwise, listwise
    (generated), listwise_logits (one pass), bootstrapping (all passes averaged, generated or
    logits as `listwise`); `top` is the listwise answer's length (`prompts.listwise_top`)."""
    n, m = out.items.shape
    base = retrieval_utility(n, m, c)
    systems: dict[str, np.ndarray] = {}
    if not np.isnan(out.point).all():
        systems["pointwise"] = base + c.pointwise * np.nan_to_num(out.point, nan=0.0)
    if not np.isnan(out.pair_yes).all():
        systems["pairwise"] = base + pairwise_bonus(out, c)
    if out.list_logprob.size and not np.isnan(out.list_logprob).all():
        by_logits = listwise_bonus(logit_ranks(out.list_logprob), c, top)  # (U, B, m)
        systems["listwise_logits"] = base + by_logits[:, 0]
        passes = by_logits
        if (out.list_status >= 0).all():
            generated = listwise_bonus(out.list_rank, c, top)
            systems["listwise"] = base + generated[:, 0]
            passes = generated if listwise == "generate" else by_logits
        if out.list_rank.shape[1] > 1:
            systems["bootstrapping"] = base + passes.mean(axis=1)
    return systems


def hybrid(systems: dict[str, np.ndarray], weights: tuple[float, float, float], listwise: str = "generate") -> np.ndarray:
    """a1 U_point + a2 U_pair + a3 U_list over the tasks present (a missing task's weight is 0)."""
    names = ("pointwise", "pairwise", "listwise" if listwise == "generate" else "listwise_logits")
    present = [(w, systems[name]) for w, name in zip(weights, names) if name in systems]
    if not present:
        raise ValueError("no task outputs to combine")
    return sum(w * u for w, u in present)


def simplex(step: float) -> list[tuple[float, float, float]]:
    """Every (a1, a2, a3) on a grid of `step` with a1 + a2 + a3 = 1."""
    n = int(round(1 / step))
    return [(i / n, j / n, (n - i - j) / n) for i in range(n + 1) for j in range(n + 1 - i)]


def mean_metric(out: RankerOutputs, scores: np.ndarray, gains: dict, metric: "str | Measure") -> float:
    """The mean of `metric` over the users of `out` when their candidates are sorted by `scores`
    (ties keep the backbone's order: all-zero scores give the backbone's own value)."""
    metric = str(Measure.parse(metric))
    return float(per_user(Rankings.from_scores(out.users, out.items, scores), gains, [metric]).iloc[:, 0].mean())


def weight_grid(systems: dict[str, np.ndarray], out: RankerOutputs, gains: dict, metric: "str | Measure",
                step: float, listwise: str, backbone: np.ndarray | None = None,
                backbone_weights=(0.0,)) -> list[dict]:
    """The mean `metric` over the users of `out` of every hybrid a1 U_point + a2 U_pair + a3 U_list
    on the simplex grid `step`, plus a0 `backbone` for each a0 in `backbone_weights` when given."""
    metric = str(Measure.parse(metric))
    grid = []
    for weights in simplex(step):
        llm = hybrid(systems, weights, listwise)
        for a0 in (backbone_weights if backbone is not None else (0.0,)):
            point = {"weights": weights} if backbone is None else {"weights": weights, "a0": a0}
            grid.append({**point, metric: mean_metric(out, llm if backbone is None else llm + a0 * backbone,
                                                      gains, metric)})
    return grid


def closest_to_equal(weights) -> float:
    """Tie-break of the weight grids: minus the L1 distance of `weights` from equal weights."""
    return -float(np.abs(np.array(weights) - 1 / 3).sum())


def tune_weights(systems: dict[str, np.ndarray], out: RankerOutputs, gains: dict, metric: "str | Measure", step: float,
                 listwise: str = "generate") -> tuple[tuple[float, float, float], float, list[dict]]:
    """The grid point whose hybrid maximises the mean of `metric` over the users of `out`
    (ties: the one closest to equal weights), its value and the whole grid's values."""
    metric = str(Measure.parse(metric))
    grid = weight_grid(systems, out, gains, metric, step, listwise)
    best = max(grid, key=lambda g: (round(g[metric], 12), closest_to_equal(g["weights"])))
    return best["weights"], best[metric], grid
