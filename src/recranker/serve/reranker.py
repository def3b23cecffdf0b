"""The Python API of a finished run: rank any user's candidates with its tuned LLM.

    from recranker.serve import Reranker
    reranker = Reranker.load("runs/demo")
    result = reranker.rank(history=[("50", 5), ("172", 4), {"title": "Heat (1995)", "rating": 4}],
                           candidates=["1", "181", "258", "100"], k=3)
    [(c.item, c.score) for c in result.items]

History entries are catalogue item ids with a rating (or a free title where the catalogue has no
entry); candidates are catalogue ids, best first by the backbone, or with `scores` (the backbone's
scores, higher is better) that give that order. The prompts come from the study's own code path
(`LLMRanker.ask`): a user the run's conventional models know (`user`, a raw user id of the run's
data) gets their hints; anyone else gets the prompts without hints. The score of a candidate is the
paper's hybrid utility a1 U_point + a2 U_pair + a3 U_list with the run's weights (tuned on its
validation users when the run tuned them); each task's utility is returned beside it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recranker.config import StudyConfig, override
from recranker.errors import RecrankerError
from recranker.prompts.render import IDENTIFIERS
from recranker.ranking.backend import Backend
from recranker.ranking.hybrid import hybrid, utilities
from recranker.ranking.llm import LLMRanker
from recranker.types import Rankings

log = logging.getLogger(__name__)

#: a served transformers backend pads its batches' widths to a multiple of this many tokens: requests
#: of every history length then share a bounded set of shapes, and the native memory that grows with
#: each new shape stays bounded (BENCHMARKS "serve-soak")
SERVE_PAD_MULTIPLE = 32

#: the task utilities a result reports, by the task names of the API
TASK_UTILITIES = {"pointwise": "pointwise", "pairwise": "pairwise", "listwise": "listwise_logits"}


class RequestError(RecrankerError, ValueError):
    """A rank request the run cannot answer (unknown item, empty or oversized list, bad rating...)."""


@dataclass(frozen=True)
class RankRequest:
    """One user's request: `history` is a list of (item id, rating) or {"item": id, "rating": r}
    or {"title": text, "rating": r}; `candidates` catalogue item ids; `scores` the backbone's
    scores of the candidates (None: the given order is the backbone's); `user` a raw user id of
    the run's data, for hints (None or unknown: no hints); `tasks` a subset of the tuned tasks;
    `k` how many to return (None: all)."""

    history: Sequence[Any]
    candidates: Sequence[Any]
    scores: Sequence[float] | None = None
    user: Any = None
    tasks: Sequence[str] | None = None
    k: int | None = None


@dataclass(frozen=True)
class RankedItem:
    """A candidate in the returned order: its id, its hybrid score and each task's utility."""

    item: str
    score: float
    utilities: dict[str, float]


@dataclass(frozen=True)
class RankResult:
    """The ranked candidates (best first, `k` of them), whether hints were shown, the tasks asked."""

    items: list[RankedItem]
    hints: bool
    tasks: list[str]
    weights: tuple[float, float, float] = field(default=(1 / 3, 1 / 3, 1 / 3))


@dataclass(frozen=True)
class Limits:
    """Bounds on one request (the HTTP service's settings too)."""

    max_candidates: int = len(IDENTIFIERS)
    max_history: int = 200
    max_title_chars: int = 300


class Reranker:
    """A run's tuned LLM with its data, prompt settings, hint models and hybrid weights."""

    def __init__(self, cfg: StudyConfig, ranker: LLMRanker, weights: tuple[float, float, float],
                 limits: Limits | None = None) -> None:
        self.cfg, self.ranker, self.weights = cfg, ranker, weights
        self.limits = limits or Limits()
        dataset = ranker.split.dataset
        self.item_codes = {str(raw): code for code, raw in enumerate(dataset.item_ids.tolist())}
        self.user_codes = {str(raw): code for code, raw in enumerate(dataset.user_ids.tolist())}
        self.item_ids = [str(raw) for raw in dataset.item_ids.tolist()]
        self.tasks = list(ranker.config.tasks or ranker.renderer.templates)
        if getattr(self.backend, "pad_multiple", None) == 1:  # a bounded set of shapes: memory stays flat
            self.backend.pad_multiple = SERVE_PAD_MULTIPLE

    @property
    def backend(self) -> Backend:
        return self.ranker.backend

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, *, backend: str | Backend = "transformers", dtype: str | None = None,
             server_url: str | None = None, hints: bool = True, limits: Limits | None = None) -> "Reranker":
        """The reranker of a finished run folder (or of one of its tune/<variant> folders).

        `backend`: "transformers", "vllm", "openai" (an OpenAI-compatible server at `server_url`
        serving the run's merged model folder, tune/<variant>/merged), or a `Backend` instance
        that answers with the run's tuned model; `dtype` overrides `ranking.dtype`;
        `hints=False` never shows hints."""
        from recranker.serve.run_folder import load_backend, load_hint_models, load_split, run_config, run_weights
        from recranker.stages.prompts import prompt_renderer
        from recranker.stages.models import pass_ranking

        cfg, folder = run_config(path)
        if dtype is not None:
            cfg = override(cfg, {"ranking.dtype": dtype})
        if isinstance(backend, str):
            backend = load_backend(cfg, folder, backend, server_url)
        split = load_split(cfg)
        models = load_hint_models(cfg, split) if hints and cfg.prompts.hints.enabled else None
        ranking = pass_ranking(cfg, "tuned", "valid").model_copy(update={"tasks": cfg.ranked_tasks})
        renderer = prompt_renderer(cfg, split, backend.tokenizer, cfg.ranked_tasks)
        return cls(cfg, LLMRanker(backend, renderer, split, models, ranking), run_weights(cfg), limits)

    # ----------------------------------------------------------------------------- ranking
    def rank(self, history: Sequence[Any], candidates: Sequence[Any], *, scores: Sequence[float] | None = None,
             user: Any = None, tasks: Sequence[str] | None = None, k: int | None = None) -> RankResult:
        """The candidates reranked by the LLM (see `RankRequest` for the arguments)."""
        return self.rank_many([RankRequest(history, candidates, scores, user, tasks, k)])[0]

    def rank_many(self, requests: Sequence[RankRequest]) -> list[RankResult]:
        """Several requests answered together: the prompts of all requests asking the same tasks
        about as many candidates go to the backend in one call (each request's prompts share
        their prefix, the history). A bad request raises `RequestError` before any is ranked."""
        parsed = [self.parse(r) for r in requests]
        results: list[RankResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(parsed):
            groups.setdefault((p.tasks, len(p.candidates)), []).append(i)
        for (tasks, _), rows in groups.items():
            for i, result in zip(rows, self._rank_group([parsed[i] for i in rows], tasks)):
                results[i] = result
        return results  # type: ignore[return-value]

    def _rank_group(self, parsed: list["Parsed"], tasks: tuple[str, ...]) -> list[RankResult]:
        """One backend call for requests of the same tasks and list length."""
        base = self.ranker
        offset, titles, histories = base.split.dataset.n_items, [], []
        for p in parsed:  # free titles become the codes n_items, n_items + 1, ... of this call
            histories.append((np.where(p.history_items < 0, offset + len(titles) - 1 - p.history_items,
                                       p.history_items), p.history_ratings))
            titles += p.free_titles
        renderer = base.renderer.with_titles(titles) if titles else base.renderer
        ranker = LLMRanker(base.backend, renderer, base.split, base.hints, base.config.model_copy(update={"tasks": list(tasks)}))
        items = np.stack([p.candidates for p in parsed])  # (n, m)
        known = np.array([p.user is not None for p in parsed])
        users = np.array([p.user if p.user is not None else 0 for p in parsed], dtype=np.int64)
        ratings = scores = None
        if base.hints is not None and known.any():
            scores = np.where(known[:, None], base.hints.ranking.score(users, items, "test"), np.nan)
            if "pointwise" in tasks:
                ratings = np.where(known[:, None], base.hints.rating.predict_ratings(users, items), np.nan)
        out = ranker.ask(Rankings(users, items, np.zeros(items.shape)), histories, [(2, p.key) for p in parsed],
                         ratings, scores)
        systems = utilities(out, self.cfg.ranking.constants, self.cfg.prompts.listwise_top, "logits")
        total = hybrid(systems, self.weights, "logits")
        results = []
        for r, p in enumerate(parsed):
            order = np.argsort(-total[r], kind="stable")[: p.k]
            ranked = [RankedItem(self.item_ids[p.candidates[j]], float(total[r, j]),
                                 {task: float(systems[name][r, j]) for task, name in TASK_UTILITIES.items()
                                  if name in systems}) for j in order]
            results.append(RankResult(ranked, hints=bool(known[r] and base.hints is not None), tasks=list(tasks),
                                      weights=self.weights))
        return results

    # ----------------------------------------------------------------------------- input checks
    def parse(self, request: RankRequest) -> "Parsed":
        """The request in item codes, checked against the catalogue and the limits (a
        `RequestError` naming the bad field otherwise)."""
        return parse_request(self, request)


@dataclass(frozen=True)
class Parsed:
    """A checked request: candidate codes in the backbone's order, the history (codes; -1 - k is
    the request's k-th free title), the known user's code or None, the tasks, k and the seed key."""

    candidates: np.ndarray
    history_items: np.ndarray
    history_ratings: np.ndarray
    free_titles: list[str]
    user: int | None
    tasks: tuple[str, ...]
    k: int
    key: int


def parse_request(reranker: Reranker, request: RankRequest) -> Parsed:
    """See `Reranker.parse`."""
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
    cand_codes = np.array(cand, dtype=np.int64)
    if request.scores is not None:
        scores = _numbers(request.scores, "scores")
        if len(scores) != len(cand):
            raise RequestError(f"scores: {len(scores)} scores for {len(cand)} candidates")
        cand_codes = cand_codes[np.argsort(-scores, kind="stable")]
    items, ratings, titles = _history(reranker, request.history)
    tasks = tuple(reranker.tasks if request.tasks is None else _tasks(reranker, request.tasks))
    k = len(cand) if request.k is None else _plain(request.k)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise RequestError(f"k: must be a positive whole number, got {request.k!r}")
    user = None if request.user is None else reranker.user_codes.get(str(_plain(request.user)))
    key = int.from_bytes(hashlib.sha256(repr((cand, items.tolist(), titles)).encode()).digest()[:7], "little")
    return Parsed(cand_codes, items, ratings, titles, user, tasks, min(k, len(cand)), key)


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


def _tasks(reranker: Reranker, tasks: Any) -> list[str]:
    tasks = _sequence(tasks)
    if not tasks or not all(isinstance(t, str) for t in tasks):
        raise RequestError(f"tasks: give a non-empty list of task names among {reranker.tasks}")
    unknown = [t for t in tasks if t not in reranker.tasks]
    if unknown:
        raise RequestError(f"tasks: {unknown} not among the run's tuned tasks {reranker.tasks}")
    return [t for t in reranker.tasks if t in tasks]


def _history(reranker: Reranker, history: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
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
