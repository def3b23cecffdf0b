"""The leakage check of instruction data: what a training prompt shows must be knowable in training.

`check_instruction_leakage` raises `LeakageError` when a training record
- mentions (as a candidate or in its history) the validation or test target of its user,
- shows in its history an item it asks about, or
- carries a hint from a model whose training data held an interaction the record asks about
  (an in-sample hint: what cross-fitting prevents).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from recranker.hints import HintModels
from recranker.retrieval import Retriever
from recranker.split import LeakageError, Split


def check_instruction_leakage(records: Iterable[dict[str, Any]], split: Split, hints: HintModels | None = None) -> int:
    """Check every record (see the module docstring); returns how many were checked. Hints are
    checked when `hints` (the models the records were built with) is given."""
    targets = {target: dict(zip(split.users.tolist(), split.target_items(target).tolist())) for target in ("valid", "test")}
    seen_by: dict[int, set[tuple[int, int]]] = {}
    n = 0
    for record in records:
        n += 1
        user, asked = record["user_code"], record["item_codes"]
        where = f"{record['task']} instruction {record.get('instance', n - 1)} (user {record['user']})"
        for which, by_user in targets.items():
            item = by_user.get(user)
            if item in asked or item in record["history"]:
                raise LeakageError(f"{where}: mentions its {which} target, item {item}")
        if set(asked) & set(record["history"]):
            raise LeakageError(f"{where}: its history shows an item it asks about")
        if hints is not None and record.get("hint") is not None:
            model = _hint_model(hints, record)
            if id(model) not in seen_by:
                seen_by[id(model)] = _training_keys(model)
            keys = seen_by[id(model)]
            seen = [item for item in asked if (user, item) in keys]
            if seen:
                raise LeakageError(
                    f"{where}: its hint comes from a model ({model.name}, "
                    f"{_which(record)}) that was trained on the asked interaction with item {seen[0]}"
                )
    return n


def _hint_model(hints: HintModels, record: dict[str, Any]) -> Retriever:
    pointwise = record["task"] == "pointwise"
    fold = record["hint"].get("fold_model")
    if fold is None:
        return hints.rating if pointwise else hints.ranking
    per_fold = hints.rating_folds if pointwise else hints.ranking_folds
    if per_fold is None:
        raise LeakageError(f"{record['task']} instruction: hint from fold model {fold}, but no fold models were given")
    return per_fold[int(fold)]


def _which(record: dict[str, Any]) -> str:
    fold = record["hint"].get("fold_model")
    return "fitted on the whole training set" if fold is None else f"fitted without fold {fold}"


def _training_keys(model: Retriever) -> set[tuple[int, int]]:
    train = model._require_split().train
    return set(zip(train["user"].to_numpy(np.int64).tolist(), train["item"].to_numpy(np.int64).tolist()))
