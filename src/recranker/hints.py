"""Hints from conventional models for prompts (RecRanker's prompt enhancement), cross-fitted.

Pointwise prompts get the rating a biased MF predicts; pairwise and listwise prompts get the
preference or order of a ranking model (LightGCN by default). At inference the hints come from
the models fitted on the whole training set. A training prompt asks about interactions of the
training set itself, so a hint from those models would be in-sample: far more accurate than at
inference, and an LLM tuned on it learns to copy it. With cross-fitting (the default) the hint of
a training prompt comes from the model fitted without the prompt's held-out fold
(`recranker.candidates`), so it is exactly as blind to the asked interactions as at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from recranker.candidates import TrainingPools
from recranker.metrics import per_user
from recranker.retrieval import Retriever, RetrieverConfig, make_retriever
from recranker.split import Split
from recranker.types import Rankings

log = logging.getLogger(__name__)


class HintModels:
    """The hint models: fitted on the whole training set (`rating`, `ranking`) and, when
    cross-fitting, one of each per fold (`rating_folds[f]` never saw fold f)."""

    def __init__(
        self,
        rating: Retriever,
        ranking: Retriever,
        rating_folds: Sequence[Retriever] | None = None,
        ranking_folds: Sequence[Retriever] | None = None,
    ) -> None:
        if not hasattr(rating, "predict_ratings"):
            raise TypeError(f"the rating hint model must predict ratings; {rating.name} does not")
        self.rating, self.ranking = rating, ranking
        self.rating_folds, self.ranking_folds = rating_folds, ranking_folds

    @property
    def cross_fitted(self) -> bool:
        """Whether training hints come from per-fold models."""
        return self.rating_folds is not None

    def ratings(self, users: np.ndarray, items: np.ndarray, folds: np.ndarray | None = None) -> np.ndarray:
        """(n, m) predicted ratings in [1, 5] of items (n, m) for users (n,); with `folds` (n,) each
        row comes from the model of its fold when cross-fitted."""
        return self._by_fold(users, items, folds, self.rating, self.rating_folds, _predict_ratings)

    def scores(self, users: np.ndarray, items: np.ndarray, folds: np.ndarray | None = None) -> np.ndarray:
        """(n, m) ranking-model scores of items (n, m) for users (n,), at the validation target
        (the history a training prompt may use), per fold as in `ratings`."""
        return self._by_fold(users, items, folds, self.ranking, self.ranking_folds, _score)

    @staticmethod
    def _by_fold(users, items, folds, full, per_fold, method) -> np.ndarray:
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if per_fold is None or folds is None:
            return method(full, users, items)
        folds = np.asarray(folds, dtype=np.int64)
        out = np.empty(items.shape, dtype=np.float64)
        for fold in np.unique(folds):
            rows = np.flatnonzero(folds == fold)
            out[rows] = method(per_fold[int(fold)], users[rows], items[rows])
        return out


def _predict_ratings(model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return model.predict_ratings(users, items)


def _score(model, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return model.score(users, items, "valid")


def fit_fold_models(
    split: Split, pools: TrainingPools, name: str, config: RetrieverConfig, *, progress: bool = True
) -> list[Retriever]:
    """One model `name` per fold of `pools`, each fitted on the training set without that fold."""
    models = []
    for fold in tqdm(range(pools.k), desc=f"cross-fit {name}", disable=not progress, leave=False):
        held = pools.fold_rows(fold)
        models.append(make_retriever(name, config).fit(split.holding_out(held), progress=False))
        log.info("%s: fold %d of %d fitted without %d interactions", name, fold + 1, pools.k, len(held))
    return models


def hint_quality(records: list[dict]) -> dict[str, float]:
    """How good the hints in instruction records are against the records' labels.

    pointwise: RMSE and MAE of the predicted rating; pairwise: share of pairs where the hint
    prefers the preferred item; listwise: NDCG of the hint's order over all candidates, gains =
    labels (the ratings, 0 for non-interacted). Empty when the records carry no hints.
    """
    hinted = [r for r in records if r.get("hint") is not None]
    if not hinted:
        return {}
    task = hinted[0]["task"]
    out: dict[str, float] = {"hinted": float(len(hinted))}
    if task == "pointwise":
        error = np.array([r["hint"]["value"] - r["labels"][0] for r in hinted])
        out.update(rmse=float(np.sqrt(np.mean(error**2))), mae=float(np.mean(np.abs(error))))
    elif task == "pairwise":
        out["accuracy"] = float(np.mean([r["hint"]["value"] == r["permutation"].index(0) for r in hinted]))
    else:  # the hint's order of candidate positions as a ranked list, graded by the labels
        rows = [r for r in hinted if max(r["labels"]) > 0]
        order = np.array([r["hint"]["value"] for r in rows], dtype=np.int64)  # (n, c) positions, best first
        ranked = Rankings(np.arange(len(rows)), order, np.zeros(order.shape))
        gains = {k: {p: g for p, g in enumerate(r["labels"]) if g > 0} for k, r in enumerate(rows)}
        out["ndcg"] = float(per_user(ranked, gains, [f"NDCG@{order.shape[1]}"]).iloc[:, 0].mean())
    return out


def title_word_scores(split: Split, users: np.ndarray, items: np.ndarray, target: str = "test") -> np.ndarray:
    """(U, m) a plain text reader's scores, the ceiling of what the titles tell: for each user, the
    words of the titles they liked before `target` count +1, those of titles they did not
    like -1; a candidate scores the mean count of its title's words. Reads the split only (never the
    hidden truth), so on the negative control it is as blind as any reader must be."""
    titles = split.dataset.items["title"].to_numpy()
    tokens = [set(str(t).lower().split()) - {"the"} for t in titles]
    history = split.history(target)
    liked = split.dataset.feedback.liked(history["rating"].to_numpy())
    votes: dict[int, dict[str, float]] = {}
    for user, item, good in zip(history["user"].to_numpy(), history["item"].to_numpy(), liked):
        counts = votes.setdefault(int(user), {})
        for word in tokens[int(item)]:
            counts[word] = counts.get(word, 0.0) + (1.0 if good else -1.0)
    out = np.zeros(np.shape(items), dtype=np.float64)
    for row, user in enumerate(np.asarray(users)):
        counts = votes.get(int(user), {})
        for col, item in enumerate(np.asarray(items)[row]):
            words = tokens[int(item)]
            out[row, col] = sum(counts.get(w, 0.0) for w in words) / max(1, len(words))
    return out
