"""Beyond the paper's hybrid: listwise position calibration, a fusion that can fall back to the
backbone, a learned fusion, and the signal diagnostics of each task.

Position calibration. The first answer step's identifier log-probabilities of a listwise prompt
(`RankerOutputs.list_logprob`) mix what the LLM thinks of a candidate with where it is shown: a
small model puts most of its mass on "A". Candidates are shuffled, so averaging the normalised
log-probability of each shown position over many prompts estimates the model's position prior
without any label; subtracting it (`calibrate`) leaves the candidate's own evidence (contextual
calibration, in log space).

Tuned hybrid. U = a1 U_point + a2 U_pair + a3 U_list + a0 U_retrieval, with (a1, a2, a3) on the
simplex and a0 from a grid whose largest value reproduces the backbone's order; chosen on all
covered validation users, so on validation it is never below the backbone (`tune_fusion`).

Learned fusion. A pairwise logistic regression (scikit-learn) on per-candidate features
(`candidate_features`: backbone rank and score, expected rating, pairwise wins, the calibrated
listwise log-probability and its rank, the hints), fitted on the validation users' pairs (relevant
over not relevant) and applied to the test users (`LearnedFusion`).

Diagnostics. `target_auc`: per user, the share of (relevant, other) candidate pairs a score orders
correctly (0.5: no information); `first_pick_counts` and `position_test`: where the top listwise
candidate was shown, against uniform (chi-square).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recranker.metrics import Measure
from recranker.ranking.config import UtilityConstants
from recranker.ranking.hybrid import closest_to_equal, retrieval_utility, weight_grid
from recranker.ranking.llm import RankerOutputs

FEATURES = ("backbone rank", "backbone score", "expected rating", "pairwise wins", "listwise log-prob",
            "listwise rank", "rating hint", "ranking hint")


# ----------------------------------------------------------------------------- position calibration
def _log_softmax(values: np.ndarray) -> np.ndarray:
    shifted = values - np.nanmax(values, axis=-1, keepdims=True)
    return shifted - np.log(np.nansum(np.exp(shifted), axis=-1, keepdims=True))


def shown_logprobs(out: RankerOutputs) -> np.ndarray:
    """(U, B, m) the normalised first-step log-probability of the identifier at each shown position."""
    by_column = _log_softmax(out.list_logprob)
    return np.take_along_axis(by_column, out.list_shown, axis=-1)


def position_prior(out: RankerOutputs, *, balance_steps: int = 100, step: float = 0.02) -> np.ndarray:
    """(m,) the position prior of the listwise prompts of `out` (no label used): the mean normalised
    log-probability of each shown position, then refined in `balance_steps` small steps (each adds
    `step` * log(m * share) of each position's first picks) until the calibrated first picks of
    these prompts are spread evenly over the positions; zeros when there are none. On ML-100K the
    mean alone left a 8-point gap from uniform on test, the refinement 4.6 (BENCHMARKS.md)."""
    m = out.items.shape[1]
    if not len(out) or np.isnan(out.list_logprob).all():
        return np.zeros(m)
    prior = np.nanmean(shown_logprobs(out).reshape(-1, m), axis=0)
    for _ in range(balance_steps):
        counts = first_pick_counts(calibrate(out, prior))
        prior = prior + step * np.log(m * (counts + 1) / (counts.sum() + m))
    return prior


def calibrate(out: RankerOutputs, prior: np.ndarray) -> RankerOutputs:
    """`out` with each listwise log-probability less the prior of the position it was shown at
    (`out` itself when it has no listwise log-probabilities)."""
    if not out.list_logprob.size or np.isnan(out.list_logprob).all():
        return out
    position = np.argsort(out.list_shown, axis=-1)  # column -> shown position
    calibrated = _log_softmax(out.list_logprob) - prior[position]
    return RankerOutputs(**{**out.__dict__, "list_logprob": calibrated})


def first_pick_counts(out: RankerOutputs) -> np.ndarray:
    """(m,) how often the candidate with the highest first-step log-probability sat at each shown
    position, over every listwise prompt of `out`."""
    m = out.items.shape[1]
    if not len(out) or np.isnan(out.list_logprob).all():
        return np.zeros(m, dtype=np.int64)
    top = np.argmax(np.nan_to_num(out.list_logprob, nan=-np.inf), axis=-1)
    position = np.argsort(out.list_shown, axis=-1)
    return np.bincount(np.take_along_axis(position, top[..., None], -1).ravel(), minlength=m)


def position_test(counts: np.ndarray) -> dict:
    """Shares per shown position, the largest distance from uniform (in points of share) and the
    chi-square goodness-of-fit p-value against uniform."""
    from scipy.stats import chisquare

    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum()
    if n == 0:
        return {"answers": 0}
    shares = counts / n
    return {"answers": int(n), "shares": shares.round(4).tolist(),
            "max_gap_points": float(100 * np.abs(shares - 1 / len(counts)).max()),
            "chi2_p": float(chisquare(counts).pvalue)}


# ----------------------------------------------------------------------------- tuned hybrid
def tune_fusion(systems: dict[str, np.ndarray], out: RankerOutputs, gains: dict, metric: "str | Measure",
                step: float, listwise: str, constants: UtilityConstants,
                backbone_weights) -> tuple[tuple, float, float]:
    """The (a1, a2, a3) on the simplex (grid `step`) and a0 in `backbone_weights` whose
    a1 U_point + a2 U_pair + a3 U_list + a0 U_retrieval maximises the mean of `metric` over the
    users of `out` (ties: the larger a0, closer to the backbone, then the weights closest to
    equal); returns the weights, a0 and the value."""
    metric = str(Measure.parse(metric))
    grid = weight_grid(systems, out, gains, metric, step, listwise, retrieval_utility(*out.items.shape, constants),
                       backbone_weights)
    best = max(grid, key=lambda g: (round(g[metric], 12), g["a0"], closest_to_equal(g["weights"])))
    return best["weights"], best["a0"], best[metric]


# ----------------------------------------------------------------------------- learned fusion
def pairwise_wins(out: RankerOutputs) -> np.ndarray:
    """(U, m) each candidate's mean soft win over the pairs it was asked in: for "a over b",
    (P(Yes | a over b) + 1 - P(Yes | b over a)) / 2 to a and the rest to b; 0.5 when not asked."""
    n, m = out.items.shape
    wins, asked = np.zeros((n, m)), np.zeros((n, m))
    for p, (a, b) in enumerate(out.pairs):
        win_a = (out.pair_yes[:, p, 0] + 1 - out.pair_yes[:, p, 1]) / 2
        ok = ~np.isnan(win_a)
        wins[ok, a] += win_a[ok]
        wins[ok, b] += 1 - win_a[ok]
        asked[ok, a] += 1
        asked[ok, b] += 1
    return np.where(asked > 0, wins / np.maximum(asked, 1), 0.5)


def _standardise(values: np.ndarray) -> np.ndarray:
    """Per row: minus the mean, over the standard deviation (0 where constant or missing)."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    spread = values.std(axis=1, keepdims=True)
    return np.where(spread > 0, (values - values.mean(axis=1, keepdims=True)) / np.where(spread > 0, spread, 1), 0.0)


def candidate_features(out: RankerOutputs, backbone_scores: np.ndarray, rating_hint: np.ndarray | None = None,
                       ranking_hint: np.ndarray | None = None) -> np.ndarray:
    """(U, m, len(FEATURES)) features of each candidate (missing ones 0): its backbone rank (0 = best),
    its backbone score standardised per user, the expected rating, the pairwise wins, the first
    listwise pass's log-probability (as given: calibrate first) and the rank it implies, the
    rating hint and the ranking hint standardised per user."""
    n, m = out.items.shape
    zeros = np.zeros((n, m))
    logprob = out.list_logprob[:, 0] if out.list_logprob.size else zeros
    has_list = not np.isnan(logprob).all()
    columns = [
        np.tile(np.arange(m, dtype=np.float64), (n, 1)),
        _standardise(backbone_scores),
        np.nan_to_num(out.point, nan=0.0) if not np.isnan(out.point).all() else zeros,
        pairwise_wins(out) if not np.isnan(out.pair_yes).all() else zeros,
        _log_softmax(logprob) if has_list else zeros,
        np.argsort(np.argsort(-logprob, axis=1, kind="stable"), axis=1).astype(np.float64) if has_list else zeros,
        zeros if rating_hint is None else np.asarray(rating_hint, dtype=np.float64),
        zeros if ranking_hint is None else _standardise(ranking_hint),
    ]
    return np.stack(columns, axis=-1)


def relevance(out: RankerOutputs, gains: dict) -> np.ndarray:
    """(U, m) gain of each candidate (0 when not relevant)."""
    return np.array([[gains.get(int(u), {}).get(int(i), 0.0) for i in row] for u, row in zip(out.users, out.items)])


@dataclass
class LearnedFusion:
    """A pairwise logistic regression on candidate features: score = features @ coef, fitted so
    that a relevant candidate outscores a less relevant one of the same user."""

    coef: np.ndarray
    scale: np.ndarray
    pairs: int

    @classmethod
    def fit(cls, features: np.ndarray, grades: np.ndarray, *, c: float = 1.0) -> "LearnedFusion":
        """Fit on (U, m, F) features and (U, m) grades (pairs of one user with different grades)."""
        from sklearn.linear_model import LogisticRegression

        diffs = []
        for x, g in zip(features, grades):
            better, worse = np.nonzero(g[:, None] > g[None, :])
            diffs.append(x[better] - x[worse])
        diffs = np.concatenate(diffs) if diffs else np.zeros((0, features.shape[-1]))
        scale = features.reshape(-1, features.shape[-1]).std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        if not len(diffs):
            return cls(np.zeros(features.shape[-1]), scale, 0)
        x = np.concatenate([diffs, -diffs]) / scale
        y = np.r_[np.ones(len(diffs)), np.zeros(len(diffs))]
        model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000).fit(x, y)
        return cls(model.coef_[0], scale, len(diffs))

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(U, m) the fused score of each candidate."""
        return (features / self.scale) @ self.coef

    @classmethod
    def cross_fitted(cls, features: np.ndarray, grades: np.ndarray, *, c: float = 1.0, folds: int = 5,
                     seed: int = 0) -> np.ndarray:
        """(U, m) each user's candidates scored by a fusion fitted without that user's fold (`folds`
        seeded folds of users): out-of-sample scores, for a validation value that is not the fit's
        own (a lone user, whose fold is everyone, keeps 0: the backbone's order)."""
        fold = np.random.default_rng([seed, 11]).permutation(len(features)) % folds
        scores = np.zeros(features.shape[:2])
        for f in range(folds):
            held = fold == f
            if held.any() and (~held).any():
                scores[held] = cls.fit(features[~held], grades[~held], c=c).scores(features[held])
        return scores

    def to_json(self) -> dict:
        return {"features": list(FEATURES), "coef": self.coef.tolist(), "scale": self.scale.tolist(), "pairs": self.pairs}

    @classmethod
    def from_json(cls, data: dict) -> "LearnedFusion":
        if list(data.get("features", [])) != list(FEATURES):
            raise ValueError(f"a learned fusion of the features {data.get('features')}, not {list(FEATURES)}")
        return cls(np.asarray(data["coef"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64),
                   int(data["pairs"]))


# ----------------------------------------------------------------------------- diagnostics
def target_auc(scores: np.ndarray, grades: np.ndarray) -> np.ndarray:
    """Per user with a relevant candidate, the share of (more relevant, less relevant) candidate
    pairs that `scores` orders correctly, ties counting half; (U',) for those users."""
    out = []
    for s, g in zip(np.asarray(scores, dtype=np.float64), grades):
        better, worse = np.nonzero(g[:, None] > g[None, :])
        if len(better):
            out.append(np.mean((s[better] > s[worse]) + 0.5 * (s[better] == s[worse])))
    return np.array(out)


def bootstrap_ci(values: np.ndarray, *, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `values` (resampling its entries)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)
