"""The Python API of a finished run: rank any user's candidates with its tuned LLM and the system
its study validated.

    from recranker import Reranker
    reranker = Reranker.load("runs/demo")
    result = reranker.rank(history=[("50", 5), ("172", 4), {"title": "Heat (1995)", "rating": 4}],
                           candidates=["1", "181", "258", "100"], k=3)
    result.system, [(c.item, c.score) for c in result.items]

History entries are catalogue item ids with a rating (or a free title where the catalogue has no
entry); candidates are catalogue ids, best first by the backbone, or with `scores` (the backbone's
scores, higher is better) that give that order. The prompts come from the study's own code path
(`StudyConfig.llm_ranker`, `LLMRanker.ask`): a user the run's conventional models know (`user`, a
raw user id of the run's data) gets their hints; anyone else gets the prompts without hints.

The score of a candidate is the served system's (`recranker.ranking.systems`): by default the one
the study selected on its validation users (results/<backbone>/systems.json): the tuned hybrid
(a1 U_point + a2 U_pair + a3 U_list + a0 U_retrieval, calibrated listwise logits; it falls back to
the backbone's order when the LLM adds nothing), or the learned fusion when it won on validation.
`system=` chooses explicitly. The learned fusion reads the backbone's scores: a request without
`scores` gets the tuned hybrid, and its result says so. Each task's utility is returned beside
the score.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recranker.config import StudyConfig, override
from recranker.errors import RecrankerError
from recranker.arms import MAIN_ARM
from recranker.ranking.backend import Backend
from recranker.ranking.fusion import candidate_features
from recranker.ranking.llm import TARGET_INDEX, LLMRanker, RankerOutputs
from recranker.ranking.systems import Hybrid, Systems
from recranker.runs import FinishedRun
from recranker.serve.requests import Limits, Parsed, RankRequest, RequestError, parse_request
from recranker.types import Rankings

log = logging.getLogger(__name__)

#: a served transformers backend pads its batches' widths to a multiple of this many tokens: requests
#: of every history length then share a bounded set of shapes, and the native memory that grows with
#: each new shape stays bounded (BENCHMARKS "serve-soak")
SERVE_PAD_MULTIPLE = 32

#: the task utilities a result reports, by the task names of the API and the hybrid's listwise mode
TASK_UTILITIES = {"pointwise": "pointwise", "pairwise": "pairwise"}

#: `system=` values besides a fitted system's name: the one the study selected on validation
VALIDATED = "validated"

__all__ = ["Limits", "RankRequest", "RankResult", "RankedItem", "Reranker", "RequestError"]


@dataclass(frozen=True)
class RankedItem:
    """A candidate in the returned order: its id, its score under the served system and each
    task's utility (the served hybrid's)."""

    item: str
    score: float
    utilities: dict[str, float]


@dataclass(frozen=True)
class RankResult:
    """The ranked candidates (best first, `k` of them), whether hints were shown, the tasks asked,
    the system that scored them and, for a hybrid, its weights (a1, a2, a3) and backbone weight a0."""

    items: list[RankedItem]
    hints: bool
    tasks: list[str]
    system: str
    weights: tuple[float, float, float] | None = None
    a0: float = 0.0


class Reranker:
    """A run's tuned LLM with its data, prompt settings, hint models and fitted systems; `system`
    the one it serves (None or "validated": the study's selection)."""

    def __init__(self, cfg: StudyConfig, ranker: LLMRanker, systems: Systems, system: str | None = None,
                 limits: Limits | None = None, pad_multiple: int | None = None) -> None:
        self.cfg, self.ranker, self.systems = cfg, ranker, systems
        self.system = systems.selected if system in (None, VALIDATED) else system
        if self.system not in systems.available():
            raise RecrankerError(f"system: {self.system!r} was not fitted for this run; choose {VALIDATED} or one of "
                                 f"{', '.join(systems.available())}")
        self.limits = limits or Limits()
        dataset = ranker.split.dataset
        self.item_codes = {str(raw): code for code, raw in enumerate(dataset.item_ids.tolist())}
        self.user_codes = {str(raw): code for code, raw in enumerate(dataset.user_ids.tolist())}
        self.item_ids = [str(raw) for raw in dataset.item_ids.tolist()]
        self.tasks = list(ranker.config.tasks or ranker.renderer.templates)
        if hasattr(self.backend, "pad_multiple"):  # a bounded set of shapes: memory stays flat
            self.backend.pad_multiple = SERVE_PAD_MULTIPLE if pad_multiple is None else pad_multiple

    @property
    def backend(self) -> Backend:
        return self.ranker.backend

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path, *, backend: str | Backend = "transformers", dtype: str | None = None,
             server_url: str | None = None, hints: bool = True, limits: Limits | None = None,
             system: str | None = None, backbone: str | None = None, pad_multiple: int | None = None) -> "Reranker":
        """The reranker of a finished run folder (or of one of its tune/<variant> folders).

        `backend`: "transformers", "vllm", "openai" (an OpenAI-compatible server at `server_url`
        serving the run's merged model folder, tune/<variant>/merged), or a `Backend` instance
        that answers with the run's tuned model; `dtype` overrides `ranking.dtype`; `hints=False`
        never shows hints; `system`: "validated" (default: the study's selection), "tuned hybrid",
        "learned fusion" or "hybrid" (the paper's); `backbone`: whose fitted systems (default: the
        run's first backbone); `pad_multiple`: a transformers backend's batch widths are padded to a
        multiple of it (None: `SERVE_PAD_MULTIPLE`; 1: no padding, as the study runs)."""
        run = FinishedRun.open(path)
        if dtype is not None:
            run.cfg = override(run.cfg, {"ranking.dtype": dtype})
        cfg = run.cfg
        if isinstance(backend, str):
            backend = run.backend(backend, server_url)
        split = run.split()
        models = run.hint_models(split) if hints and cfg.prompts.hints.enabled else None
        ranker = cfg.llm_ranker(backend, split, models, MAIN_ARM, "valid")
        ranker.config = ranker.config.model_copy(update={"tasks": cfg.ranked_tasks})
        return cls(cfg, ranker, run.systems(backbone), system, limits, pad_multiple)

    # ----------------------------------------------------------------------------- ranking
    def rank(self, history: Sequence[Any] | None, candidates: Sequence[Any], *, scores: Sequence[float] | None = None,
             user: Any = None, tasks: Sequence[str] | None = None, k: int | None = None,
             target: str | None = None) -> RankResult:
        """The candidates reranked by the served system (see `RankRequest` for the arguments)."""
        return self.rank_many([RankRequest(history, candidates, scores, user, tasks, k, target)])[0]

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

    def _rank_group(self, parsed: list[Parsed], tasks: tuple[str, ...]) -> list[RankResult]:
        """One backend call for requests of the same tasks and list length."""
        items = np.stack([p.candidates for p in parsed])  # (n, m)
        ratings, scores = self._hints(parsed, items)
        out = self._ask(parsed, tasks, items, ratings, scores)
        results = []
        for r, p in enumerate(parsed):
            system = self.system if p.scores is not None or self.system != "learned fusion" else "tuned hybrid"
            hybrid, one = self._hybrid(system), out.select(np.array([r]))
            utils = hybrid.utilities(one)
            if system == "learned fusion":
                total = self.systems.scores(system, one, self._features(one, p, ratings, scores, r))[0]
            else:
                total = hybrid.scores(one)[0]
            listwise = "listwise" if hybrid.listwise == "generate" else "listwise_logits"
            names = {**TASK_UTILITIES, "listwise": listwise}
            order = np.argsort(-total, kind="stable")[: p.k]
            ranked = [RankedItem(self.item_ids[p.candidates[j]], float(total[j]),
                                 {task: float(utils[name][0, j]) for task, name in names.items() if name in utils})
                      for j in order]
            results.append(RankResult(ranked, hints=bool(p.user is not None and self.ranker.hints is not None),
                                      tasks=list(tasks), system=system,
                                      weights=None if system == "learned fusion" else hybrid.weights,
                                      a0=0.0 if system == "learned fusion" else hybrid.a0))
        return results

    def _hybrid(self, system: str) -> Hybrid:
        """The hybrid whose task utilities a result reports (the tuned one for the learned fusion)."""
        return self.systems.hybrid if system == "hybrid" else self.systems.tuned  # type: ignore[return-value]

    def _ask(self, parsed: list[Parsed], tasks: tuple[str, ...], items: np.ndarray, ratings: np.ndarray | None,
             scores: np.ndarray | None) -> RankerOutputs:
        """The LLM's answers about the requests' candidates `items` (n, m), with the hints
        `ratings` and `scores` (one backend call)."""
        base = self.ranker
        offset, titles, histories, keys = base.split.dataset.n_items, [], [], []
        for p in parsed:  # free titles become the codes n_items, n_items + 1, ... of this call
            if p.target is not None:  # as the study asked: the user's history, the study's shuffles
                histories.append(base.history(p.target, p.user))
                keys.append((TARGET_INDEX[p.target], p.user))
                continue
            histories.append((np.where(p.history_items < 0, offset + len(titles) - 1 - p.history_items,
                                       p.history_items), p.history_ratings))
            keys.append((2, p.key))
            titles += p.free_titles
        renderer = base.renderer.with_titles(titles) if titles else base.renderer
        ranker = LLMRanker(base.backend, renderer, base.split, base.hints, base.config.model_copy(update={"tasks": list(tasks)}))
        users = np.array([p.user if p.user is not None else 0 for p in parsed], dtype=np.int64)
        return ranker.ask(Rankings(users, items, np.zeros(items.shape)), histories, keys, ratings, scores)

    def _hints(self, parsed: list[Parsed], items: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(n, m) the rating and ranking hints of the known users' candidates (NaN rows: none;
        the ranking hint at the request's target, else at test): what the prompts show, and the
        learned fusion's hint features."""
        hints = self.ranker.hints
        known = np.array([p.user is not None for p in parsed])
        if hints is None or not known.any():
            return None, None
        users = np.array([p.user if p.user is not None else 0 for p in parsed], dtype=np.int64)
        ratings = np.where(known[:, None], hints.rating.predict_ratings(users, items), np.nan)
        scores = np.full(items.shape, np.nan)
        for target in ("valid", "test"):
            rows = known & np.array([(p.target or "test") == target for p in parsed])
            if rows.any():
                scores[rows] = hints.ranking.score(users[rows], items[rows], target)
        return ratings, scores

    def _features(self, one: RankerOutputs, p: Parsed, ratings: np.ndarray | None, scores: np.ndarray | None,
                  r: int) -> np.ndarray:
        """(1, m, F) the learned fusion's features of request `r` (`p`, its answers `one`): its
        backbone scores, the listwise logits calibrated by the tuned hybrid's prior, and a known
        user's hints (row r of the group's `ratings` and `scores`)."""
        calibrated = self.systems.tuned.calibrated(one)  # type: ignore[union-attr]
        known = ratings is not None and p.user is not None
        rating, ranking = (ratings[r:r + 1], scores[r:r + 1]) if known else (None, None)  # type: ignore[index]
        return candidate_features(calibrated, p.scores[None, :], rating, ranking)  # type: ignore[index]

    # ----------------------------------------------------------------------------- input checks
    def parse(self, request: RankRequest) -> Parsed:
        """The request in item codes, checked against the catalogue and the limits (a
        `RequestError` naming the bad field otherwise)."""
        return parse_request(self, request)
