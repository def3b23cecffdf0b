"""A rank request of the Python API and the HTTP service, and its checks: `RankRequest`, `Limits`,
`parse_request` (one `RequestError` naming the bad field, before anything is ranked)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recranker.errors import RecrankerError
from recranker.prompts.render import MAX_CANDIDATES
from recranker.arms import TARGETS


class RequestError(RecrankerError, ValueError):
    """A rank request the run cannot answer (unknown item, empty or oversized list, bad rating...)."""


@dataclass(frozen=True)
class RankRequest:
    """One user's request: `history` is a list of (item id, rating) or {"item": id, "rating": r}
    or {"title": text, "rating": r}; `candidates` catalogue item ids; `scores` the backbone's
    scores of the candidates (None: the given order is the backbone's); `user` a raw user id of
    the run's data, for hints (None or unknown: no hints); `tasks` a subset of the tuned tasks;
    `k` how many to return (None: all); `target` ("valid" or "test"; None: neither) asks about a
    user of the run as the study did at that target: the history is the user's in the run's data
    (`history` then stays None), the prompts the study's (the same shuffles), so the answer is
    the study's for that user."""

    history: Sequence[Any] | None
    candidates: Sequence[Any]
    scores: Sequence[float] | None = None
    user: Any = None
    tasks: Sequence[str] | None = None
    k: int | None = None
    target: str | None = None


@dataclass(frozen=True)
class Limits:
    """Bounds on one request (the HTTP service's settings too)."""

    max_candidates: int = MAX_CANDIDATES
    max_history: int = 200
    max_title_chars: int = 300


@dataclass(frozen=True)
class Parsed:
    """A checked request: candidate codes in the backbone's order and their backbone scores
    (None when not given), the history (codes; -1 - k is the request's k-th free title; None: the
    user's at `target`), the known user's code or None, the tasks, k, the seed key and the target."""

    candidates: np.ndarray
    history_items: np.ndarray | None
    history_ratings: np.ndarray | None
    free_titles: list[str]
    user: int | None
    tasks: tuple[str, ...]
    k: int
    key: int
    scores: np.ndarray | None = None
    target: str | None = None


def parse_request(reranker: Any, request: RankRequest) -> Parsed:
    """`request` checked against `reranker`'s catalogue (`item_codes`, `user_codes`), its `tasks`
    and `limits`; a `RequestError` naming the bad field otherwise."""
    limits, codes = reranker.limits, reranker.item_codes
    candidates = _sequence(request.candidates)
    if not candidates:
        raise RequestError("candidates: give a non-empty list of item ids")
    if len(candidates) > limits.max_candidates:
        raise RequestError(f"candidates: {len(candidates)} items, at most {limits.max_candidates}")
    cand = []
    for j, item in enumerate(map(_plain, candidates)):
        if isinstance(item, bool) or not isinstance(item, (str, int)) or str(item) not in codes:
            raise RequestError(f"candidates[{j}]: unknown item id {item!r}")
        cand.append(codes[str(item)])
    if len(set(cand)) != len(cand):
        raise RequestError("candidates: an item id appears twice")
    cand_codes, scores = np.array(cand, dtype=np.int64), None
    if request.scores is not None:
        scores = _numbers(request.scores, "scores")
        if len(scores) != len(cand):
            raise RequestError(f"scores: {len(scores)} scores for {len(cand)} candidates")
        order = np.argsort(-scores, kind="stable")
        cand_codes, scores = cand_codes[order], scores[order]
    user = None if request.user is None else reranker.user_codes.get(str(_plain(request.user)))
    target = _target(request, user)
    items = ratings = None
    titles: list[str] = []
    if target is None:
        items, ratings, titles = _history(reranker, request.history)
    tasks = tuple(reranker.tasks if request.tasks is None else _tasks(reranker, request.tasks))
    k = len(cand) if request.k is None else _plain(request.k)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RequestError(f"k: must be a positive whole number, got {request.k!r}")
    seen = None if items is None else items.tolist()
    key = int.from_bytes(hashlib.sha256(repr((cand, seen, titles)).encode()).digest()[:7], "little")
    return Parsed(cand_codes, items, ratings, titles, user, tasks, min(k, len(cand)), key, scores, target)


def _target(request: RankRequest, user: int | None) -> str | None:
    """The request's target, checked: one of `TARGETS`, for a user the run knows, without a history."""
    if request.target is None:
        return None
    if not isinstance(request.target, str) or request.target not in TARGETS:
        raise RequestError(f"target: give one of {', '.join(TARGETS)}, got {request.target!r}")
    if user is None:
        raise RequestError("target: needs a user of the run's data (user: a raw user id the run knows)")
    if request.history is not None:
        raise RequestError("history: leave it out with a target (the user's history in the run's data is shown)")
    return request.target


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (np.int64(5) -> 5); anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _sequence(values: Any) -> list | None:
    """A list, tuple or numpy array as a list of plain values; None for anything else."""
    if isinstance(values, np.ndarray):
        return values.tolist() if values.ndim >= 1 else None
    return list(values) if isinstance(values, (list, tuple)) else None


def _number(value: Any) -> bool:
    """Whether `value` is a finite int or float (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _encodable(text: str) -> bool:
    """Whether `text` is valid Unicode the tokenizer can take (no lone surrogates such as '\\ud800')."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _numbers(values: Any, name: str) -> np.ndarray:
    values = _sequence(values)
    if values is None or not all(_number(_plain(v)) for v in values):
        raise RequestError(f"{name}: give a list of finite numbers")
    return np.asarray(values, dtype=np.float64)


def _tasks(reranker: Any, tasks: Any) -> list[str]:
    tasks = _sequence(tasks)
    if not tasks or not all(isinstance(t, str) for t in tasks):
        raise RequestError(f"tasks: give a non-empty list of task names among {reranker.tasks}")
    unknown = [t for t in tasks if t not in reranker.tasks]
    if unknown:
        raise RequestError(f"tasks: {unknown} not among the run's tuned tasks {reranker.tasks}")
    return [t for t in reranker.tasks if t in tasks]


def _history(reranker: Any, history: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(codes, ratings, free titles) of the history, most recent first as given."""
    limits = reranker.limits
    history = _sequence(history)
    if history is None:
        raise RequestError("history: give a list of [item id, rating] or {item|title, rating} entries")
    if len(history) > limits.max_history:
        raise RequestError(f"history: {len(history)} entries, at most {limits.max_history}")
    items, ratings, titles = [], [], []
    for n, entry in enumerate(history):
        if isinstance(entry, Mapping):
            if set(entry) - {"item", "title", "rating"} or ("item" in entry) == ("title" in entry):
                raise RequestError(f"history[{n}]: give exactly one of 'item' and 'title', and 'rating'")
            item, title, rating = entry.get("item"), entry.get("title"), entry.get("rating")
        elif (pair := _sequence(entry)) is not None and len(pair) == 2:
            (item, rating), title = pair, None
        else:
            raise RequestError(f"history[{n}]: give [item id, rating] or {{item|title, rating}}")
        item, rating = _plain(item), _plain(rating)
        if not _number(rating):
            raise RequestError(f"history[{n}].rating: give a number, got {rating!r}")
        if title is not None:
            if not isinstance(title, str) or not title.strip() or len(title) > limits.max_title_chars:
                raise RequestError(f"history[{n}].title: give a text of 1 to {limits.max_title_chars} characters")
            if not _encodable(title):
                raise RequestError(f"history[{n}].title: not valid Unicode (a lone surrogate such as \\ud800)")
            titles.append(title)
            items.append(-len(titles))
        elif isinstance(item, bool) or not isinstance(item, (str, int)) or str(item) not in reranker.item_codes:
            raise RequestError(f"history[{n}].item: unknown item id {item!r}")
        else:
            items.append(reranker.item_codes[str(item)])
        ratings.append(float(rating))
    return np.array(items, dtype=np.int64), np.array(ratings, dtype=np.float64), titles
