"""The LLM as ranker of each user's candidates: pointwise, pairwise and listwise, from logits.

For a user with candidates c[0..m-1] (the backbone's top-m, best first) the ranker asks

- pointwise: "how would the user rate c[j]?" for every j; the expected rating under the
  next-token distribution over the rating tokens "1".."5" (renormalised over those five);
- pairwise: "would the user prefer a over b?" for the pairs (neighbours in the backbone's order,
  or all) in both orders; P(Yes) from the next-token logits of Yes and No;
- listwise: "rank these candidates" with the candidates shuffled (position shifting): the greedy
  answer parsed into an order (`parse_order`) and, from the same forward pass, the log-probability
  of each candidate's identifier at the first answer position (the one-pass order). The
  bootstrapping baseline asks `bootstrap` listwise prompts with different shuffles.

Every prompt of a user shows the same history in the same (shuffled) order, so the backend
computes the user's prefix once. Results are `RankerOutputs`, arrays aligned with the candidates,
from which `recranker.ranking.hybrid` derives the utilities.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from recranker.artifacts import atomic_write
from recranker.hints import HintModels
from recranker.prompts.render import IDENTIFIERS, PromptRenderer
from recranker.prompts.text import chat_text
from recranker.ranking.backend import Backend, Request
from recranker.ranking.config import RankingConfig
from recranker.ranking.parse import parse_order
from recranker.split import Split
from recranker.types import Rankings

TARGET_INDEX = {"valid": 0, "test": 1}


@dataclass
class RankerOutputs:
    """What the LLM said about each user's candidates (columns in the backbone's order).

    | field          | shape     | meaning                                                         |
    |----------------|-----------|-----------------------------------------------------------------|
    | users          | (U,)      | user codes                                                      |
    | items          | (U, m)    | candidates, backbone order                                      |
    | point          | (U, m)    | expected rating (NaN: task not run)                             |
    | pairs          | (P, 2)    | the asked pairs, as candidate columns (a, b)                    |
    | pair_yes       | (U, P, 2) | P(Yes) for "a over b" and for "b over a"                        |
    | list_shown     | (U, B, m) | per listwise pass, the column shown at each prompt position     |
    | list_rank      | (U, B, m) | position of each column in the parsed generated order           |
    | list_status    | (U, B)    | 0 ok, 1 repaired, 2 unparsable, -1 not generated                |
    | list_logprob   | (U, B, m) | log-probability of each column's identifier at the first answer position |
    """

    users: np.ndarray
    items: np.ndarray
    point: np.ndarray
    pairs: np.ndarray
    pair_yes: np.ndarray
    list_shown: np.ndarray
    list_rank: np.ndarray
    list_status: np.ndarray
    list_logprob: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def save(self, path: str | Path) -> None:
        with atomic_write(path, binary=True) as fh:
            np.savez(fh, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> "RankerOutputs":
        with np.load(path) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})

    @classmethod
    def concat(cls, parts: Sequence["RankerOutputs"]) -> "RankerOutputs":
        shared = {"pairs"}
        return cls(**{f.name: parts[0].pairs if f.name in shared else np.concatenate([getattr(p, f.name) for p in parts])
                      for f in fields(cls)})

    def select(self, rows: np.ndarray) -> "RankerOutputs":
        return RankerOutputs(**{f.name: getattr(self, f.name) if f.name == "pairs" else getattr(self, f.name)[rows]
                                for f in fields(self)})


def pair_columns(m: int, kind: str) -> np.ndarray:
    """(P, 2) candidate columns asked as pairs: neighbours (j, j+1) or every j < k."""
    if kind == "adjacent":
        return np.array([(j, j + 1) for j in range(m - 1)], dtype=np.int64).reshape(-1, 2)
    return np.array([(j, k) for j in range(m) for k in range(j + 1, m)], dtype=np.int64).reshape(-1, 2)


class LLMRanker:
    """Asks `backend` the configured tasks about users' candidates.

    `hints` (the hint models fitted on the whole training set) fill the prompts' hints; None
    leaves them out (the no-hints ablation). The history shown for a target is everything the user
    did before the target.
    """

    def __init__(self, backend: Backend, renderer: PromptRenderer, split: Split, hints: HintModels | None,
                 config: RankingConfig) -> None:
        self.backend, self.renderer, self.split, self.hints, self.config = backend, renderer, split, hints, config
        templates = renderer.templates
        self.rating_tokens = [backend.token_id(templates["pointwise"].render("answer", rating=str(r)))
                              for r in range(1, 6)] if "pointwise" in templates else []
        self.yes_no = ([backend.token_id(templates["pairwise"].pieces[k]) for k in ("answer_yes", "answer_no")]
                       if "pairwise" in templates else [])
        self.identifier_tokens = [backend.token_id(letter) for letter in IDENTIFIERS]
        self.token_ids = self.rating_tokens + self.yes_no + self.identifier_tokens
        self._histories: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {}

    # ----------------------------------------------------------------------------- inputs
    def history(self, target: str, user: int) -> tuple[np.ndarray, np.ndarray]:
        """Items and ratings of `user` before `target`, most recent first."""
        if target not in self._histories:
            frame = self.split.history(target)
            by_user = {}
            for u, rows in frame.groupby("user", sort=False):
                by_user[int(u)] = (rows["item"].to_numpy()[::-1], rows["rating"].to_numpy()[::-1])
            self._histories[target] = by_user
        return self._histories[target].get(user, (np.zeros(0, np.int64), np.zeros(0)))

    # ----------------------------------------------------------------------------- ranking
    def rank(self, candidates: Rankings, target: str, *, chunk: int = 16, progress: bool = True,
             on_chunk=None) -> RankerOutputs:
        """`RankerOutputs` for every user of `candidates`; `on_chunk(outputs)` sees each chunk of
        users as it finishes (to save progress)."""
        parts = []
        bar = tqdm(total=len(candidates), desc=f"LLM ranking ({target})", unit="user", disable=not progress)
        for start in range(0, len(candidates), chunk):
            rows = np.arange(start, min(start + chunk, len(candidates)))
            part = self.rank_chunk(candidates.select(rows), target)
            if on_chunk is not None:
                on_chunk(part)
            parts.append(part)
            bar.update(len(rows))
        bar.close()
        if not parts:
            return self.rank_chunk(candidates, target)
        return RankerOutputs.concat(parts)

    def rank_chunk(self, candidates: Rankings, target: str) -> RankerOutputs:
        """`RankerOutputs` of a few users of the split, their prompts sent to the backend together:
        each user's history before `target`, the hints of the models fitted on the whole
        training set."""
        return self.ask(candidates, *self._inputs(candidates, target))

    def _inputs(self, candidates: Rankings, target: str) -> tuple[list, list, np.ndarray | None, np.ndarray | None]:
        """`ask`'s inputs for users of the split: histories, shuffle keys, rating and ranking hints."""
        users, items = candidates.users, candidates.items
        tasks = set(self.config.tasks or self.renderer.templates)
        ratings = scores = None
        if self.hints is not None:
            ratings = self.hints.rating.predict_ratings(users, items) if "pointwise" in tasks else None
            scores = self.hints.ranking.score(users, items, target)
        histories = [self.history(target, int(u)) for u in users]
        keys = [(TARGET_INDEX[target], int(u)) for u in users]
        return histories, keys, ratings, scores

    def ask(self, candidates: Rankings, histories: Sequence[tuple[np.ndarray, np.ndarray]],
            keys: Sequence[tuple[int, ...]], ratings: np.ndarray | None = None,
            scores: np.ndarray | None = None) -> RankerOutputs:
        """`RankerOutputs` of any lists: row r's prompts show `histories[r]` (items and ratings,
        most recent first), shuffle with generators seeded by (ranking.seed, *keys[r]) and carry
        the hints `ratings[r]` (predicted ratings) and `scores[r]` (ranking-model scores) of the
        candidates when given (None, or a row of NaN: no hint). The one prompt path of the study and of serving."""
        cfg = self.config
        passes = cfg.bootstrap
        pairs = pair_columns(candidates.depth, cfg.pairs)
        requests, where, shown = self._requests(candidates.items, histories, keys, ratings, scores, pairs, passes)
        outputs = self.backend.run(requests, self.token_ids) if requests else []
        return self._read(candidates, pairs, shown, where, outputs)

    def prompts(self, candidates: Rankings, target: str) -> list[tuple[str, int, int, str]]:
        """Every prompt `rank_chunk` would send for `candidates` at `target`, as (task, row, index,
        text): what the LLM is asked, for tracing a user by hand."""
        passes = self.config.bootstrap
        pairs = pair_columns(candidates.depth, self.config.pairs)
        requests, where, _ = self._requests(candidates.items, *self._inputs(candidates, target), pairs, passes)
        return [(task, row, index, request.text) for (task, row, index), request in zip(where, requests)]

    def _requests(self, items: np.ndarray, histories, keys, ratings: np.ndarray | None, scores: np.ndarray | None,
                  pairs: np.ndarray, passes: int) -> tuple[list[Request], list[tuple[str, int, int]], np.ndarray]:
        """Every prompt of the rows; what each asks ((task, row, index)); and the shown order of
        each listwise pass, (U, B, m)."""
        cfg, tasks = self.config, set(self.config.tasks or self.renderer.templates)
        n, m = items.shape
        requests: list[Request] = []
        where: list[tuple[str, int, int]] = []
        shown = np.zeros((n, passes, m), dtype=np.int64)

        def ask(prompt, task: str, row: int, index: int, max_new_tokens: int = 0) -> None:
            requests.append(self._request(prompt, row, max_new_tokens))
            where.append((task, row, index))

        for row, (history, key) in enumerate(zip(histories, keys)):
            rng = functools.partial(self._rng, key)
            for j in range(m) if "pointwise" in tasks else ():
                hint = None if ratings is None or np.isnan(ratings[row, j]) else float(ratings[row, j])
                ask(self.renderer.pointwise(history, int(items[row, j]), hint=hint, rng=rng()), "pointwise", row, j)
            for p, (a, b) in enumerate(pairs) if "pairwise" in tasks else ():
                for side, (x, y) in enumerate(((a, b), (b, a))):
                    hint = None if scores is None or np.isnan(scores[row]).any() else bool(scores[row, x] >= scores[row, y])
                    prompt = self.renderer.pairwise(history, int(items[row, x]), int(items[row, y]), hint_first=hint,
                                                    rng=rng())
                    ask(prompt, "pairwise", row, 2 * p + side)
            for k in range(passes) if "listwise" in tasks else ():
                order = shown[row, k] = rng(1 + k).permutation(m)
                hint = None if scores is None or np.isnan(scores[row]).any() else np.argsort(-scores[row, order], kind="stable")
                prompt = self.renderer.listwise(history, items[row, order], hint_order=hint, rng=rng())
                ask(prompt, "listwise", row, k, cfg.max_new_tokens if cfg.generate else 0)
        return requests, where, shown

    def _rng(self, key: tuple[int, ...], *extra: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, *key, *extra])

    def _read(self, candidates: Rankings, pairs: np.ndarray, shown: np.ndarray, where: list[tuple[str, int, int]],
              outputs: list) -> RankerOutputs:
        """The answers as `RankerOutputs`: expected ratings, P(Yes), listwise orders and logits."""
        n, m = candidates.items.shape
        passes = shown.shape[1]
        point = np.full((n, m), np.nan)
        pair_yes = np.full((n, len(pairs), 2), np.nan)
        list_rank = np.tile(np.arange(m), (n, passes, 1))
        list_status = np.full((n, passes), -1, dtype=np.int64)  # -1: not generated
        list_logprob = np.full((n, passes, m), np.nan)
        r, y = len(self.rating_tokens), len(self.yes_no)
        for (task, row, k), out in zip(where, outputs):
            if task == "pointwise":
                point[row, k] = float(_softmax(out.logprobs[:r]) @ np.arange(1, 6))
            elif task == "pairwise":
                pair_yes[row, k // 2, k % 2] = float(_softmax(out.logprobs[r:r + y])[0])
            else:
                list_logprob[row, k, shown[row, k]] = out.logprobs[r + y: r + y + m]
                if out.text is None:
                    continue
                backbone_order = np.argsort(shown[row, k])  # shown positions, backbone's best first
                order, status = parse_order(out.text, IDENTIFIERS[:m], self.renderer.listwise_top, backbone_order)
                list_rank[row, k, shown[row, k][order]] = np.arange(m)
                list_status[row, k] = status
        return RankerOutputs(candidates.users, candidates.items, point, pairs, pair_yes, shown, list_rank, list_status,
                             list_logprob)

    def _request(self, prompt, row: int, max_new_tokens: int = 0) -> Request:
        return Request(chat_text(prompt.messages, self.backend.tokenizer, generation_prompt=True), row, max_new_tokens)


def _softmax(logprobs: np.ndarray) -> np.ndarray:
    z = np.exp(logprobs - logprobs.max())
    return z / z.sum()
