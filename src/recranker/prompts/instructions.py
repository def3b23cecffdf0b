"""Instruction data: one training conversation per sampled user instance and task.

For instance i of user u and task t, a generator seeded with (seed, t, i) picks a held-out fold of
u's training interactions that holds a liked one, draws the task's candidates from it (plus
negatives, `recranker.candidates`), and shuffles history and candidates (position shifting).
Hints are then computed in one batch per fold (`recranker.hints`) and each instance is rendered
with `PromptRenderer`. Records are the chat-messages format TRL and LLaMA-Factory read, with
metadata: the user, the items asked about in the order shown, their relevance labels (the user's
rating, 0 for a non-interacted item), the permutation and the hint; a listwise record also
carries a second view with the candidates shuffled (`shuffled`), for ALRO's permutation loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recranker.candidates import CandidateCounts, Candidates, RetrievedCandidates, TrainingPools
from recranker.hints import HintModels
from recranker.prompts.config import PromptsConfig
from recranker.prompts.render import IDENTIFIERS, PromptRenderer
from recranker.prompts.templates import TASKS


@dataclass
class Draft:
    """One instance before hints: its generator, fold and candidates, and what the task asks."""

    index: int
    user: int
    fold: int
    rng: np.random.Generator
    candidates: Candidates
    asked: np.ndarray  # positions into candidates, in the order the prompt shows them
    answer: np.ndarray  # pointwise/pairwise: unused; listwise: positions into `asked`, best first
    source: str = "sampled"  # where the candidates come from: sampled or retrieved
    task: str = "pointwise"


TASK_INDEX = {task: k for k, task in enumerate(TASKS)}


class InstructionBuilder:
    """Builds the training records of each task for a sample of users."""

    def __init__(self, pools: TrainingPools, renderer: PromptRenderer, hints: HintModels | None,
                 config: PromptsConfig) -> None:
        self.pools, self.renderer, self.hints, self.config = pools, renderer, hints, config
        if hints is None and not config.shift_positions and "listwise" in config.tasks:
            raise ValueError("listwise prompts without position shifting list candidates in the ranking "
                             "model's order, so they need hint models")
        self.dataset = pools.split.dataset
        self.retrieved = None
        if config.retrieved_fraction > 0:
            if hints is None or hints.ranking_folds is None:
                retrieved = [t for t in config.tasks if config.task_retrieved_fraction(t) > 0]
                raise ValueError(f"retrieved training candidates ({', '.join(f'{t}: {config.source(t)}' for t in retrieved)}) "
                                 "need the cross-fitted ranking hint models")
            self.retrieved = RetrievedCandidates(pools, hints.ranking_folds, config.depth)

    def build(self, task: str, users: np.ndarray, *, progress: bool = True) -> list[dict[str, Any]]:
        """One record per entry of `users` (user codes, repeats allowed) for `task`."""
        counts: CandidateCounts = getattr(self.config, task)
        drafts = [self._draft(task, i, int(u), counts) for i, u in enumerate(users)]
        values = self._hint_values(task, drafts)
        render = getattr(self, f"_{task}")
        bar = tqdm(drafts, desc=f"prompts {task}", disable=not progress, leave=False)
        return [render(d, None if values is None else values[k]) for k, d in enumerate(bar)]

    # ----------------------------------------------------------------------------- drafts
    def _draft(self, task: str, index: int, user: int, counts: CandidateCounts) -> Draft:
        rng = np.random.default_rng([self.config.seed, TASK_INDEX[task], index])
        fold = int(rng.choice(self.pools.usable_folds(user)))
        source, cands = "sampled", None
        share = self.config.task_retrieved_fraction(task)
        if self.retrieved is not None and share > 0 and rng.random() < share:
            fold, cands = self._retrieved(task, user, fold, rng)
            source = "sampled" if cands is None else "retrieved"
        if cands is None:
            cands = self.pools.draw(user, fold, counts, rng)
        grades = cands.grades
        if task == "pointwise":
            if not (grades > 0).any():  # the fold lacks the configured kinds: ask about a liked one
                cands = self.pools.draw(user, fold, CandidateCounts(liked=1), rng)
                grades = cands.grades
            asked = np.array([rng.choice(np.flatnonzero(grades > 0))])
        elif task == "pairwise":
            liked = np.flatnonzero(self.dataset.feedback.liked(grades))
            top = int(rng.choice(liked)) if len(liked) else int(np.argmax(grades))
            other = int(rng.choice(np.flatnonzero(grades < grades[top])))
            asked = np.array([top, other]) if rng.random() < 0.5 else np.array([other, top])
        else:
            asked = rng.permutation(len(grades))
        order = np.lexsort((rng.random(len(asked)), -grades[asked]))  # best first, ties at random
        return Draft(index, user, fold, rng, cands, asked, order, source, task)

    def _retrieved(self, task: str, user: int, fold: int,
                   rng: np.random.Generator) -> tuple[int, Candidates | None]:
        """Retrieved candidates of the first fold (`fold`, then the user's other folds in random
        order) whose list holds what the task asks about: a rated held-out item for pointwise, a
        liked one (with a lower-graded item beside it) for pairwise and listwise, as only users with
        their target among the candidates are asked at inference. (fold, None) when no fold has."""
        others = rng.permutation(np.setdiff1d(np.arange(self.pools.k), [fold]))
        for f in [fold, *others.tolist()]:
            cands = self.retrieved.draw(user, f)
            grades = cands.grades
            if task == "pointwise":
                ok = (grades > 0).any()
            else:
                liked = self.dataset.feedback.liked(grades) & (grades > 0)
                ok = liked.any() and (grades < grades[liked].min()).any()
            if ok:
                return int(f), cands
        return fold, None

    def _hint_values(self, task: str, drafts: list[Draft]) -> list[np.ndarray] | None:
        """Per draft, the hint model's values for its asked items (None without hint models or when
        neither hints nor the unshifted order need them), computed for the drafts of each length
        together (a retrieved list can be shorter than the configured one in a tiny catalogue)."""
        needs_scores = task == "listwise" and not self.config.shift_positions
        if self.hints is None or not (self.config.hints.enabled or needs_scores):
            return None
        values: list = [None] * len(drafts)
        for length in sorted({len(d.asked) for d in drafts}):
            group = [k for k, d in enumerate(drafts) if len(d.asked) == length]
            users = np.array([drafts[k].user for k in group], dtype=np.int64)
            items = np.stack([drafts[k].candidates.items[drafts[k].asked] for k in group])  # (n, length)
            folds = np.array([drafts[k].fold for k in group]) if self.config.hints.cross_fit else None
            got = self.hints.ratings(users, items, folds) if task == "pointwise" else self.hints.scores(users, items, folds)
            for row, k in enumerate(group):
                values[k] = got[row]
        return values

    # ----------------------------------------------------------------------------- records
    def _history(self, draft: Draft) -> tuple[tuple[np.ndarray, np.ndarray], np.random.Generator | None]:
        rng = draft.rng if self.config.shift_positions else None
        return self.pools.history(draft.user, draft.fold), rng

    def _shows_hint(self, d: Draft, hint: np.ndarray | None) -> bool:
        """Whether `d`'s prompt shows its hint: hints enabled and, below `hints.train_share`, a seeded
        draw of its own (not from the draft's generator, so the rest of the prompt is the same)."""
        share = self.config.hints.train_share
        if hint is None or not self.config.hints.enabled:
            return False
        return share >= 1 or bool(np.random.default_rng([self.config.seed, 13, TASK_INDEX[d.task], d.index]).random() < share)

    def _pointwise(self, d: Draft, hint: np.ndarray | None) -> dict[str, Any]:
        history, rng = self._history(d)
        target = int(d.candidates.items[d.asked[0]])
        rating = float(d.candidates.grades[d.asked[0]])
        shown = float(hint[0]) if self._shows_hint(d, hint) else None
        prompt = self.renderer.pointwise(history, target, rating=rating, hint=shown, rng=rng)
        return self._record("pointwise", d, prompt, [0], shown)

    def _pairwise(self, d: Draft, hint: np.ndarray | None) -> dict[str, Any]:
        history, rng = self._history(d)
        first, second = (int(x) for x in d.candidates.items[d.asked])
        first_preferred = bool(d.answer[0] == 0)
        hint_first = bool(hint[0] >= hint[1]) if self._shows_hint(d, hint) else None
        prompt = self.renderer.pairwise(history, first, second, first_preferred=first_preferred,
                                        hint_first=hint_first, rng=rng)
        return self._record("pairwise", d, prompt, [0, 1] if first_preferred else [1, 0],
                            None if hint_first is None else int(not hint_first))

    def _listwise(self, d: Draft, hint: np.ndarray | None) -> dict[str, Any]:
        history, rng = self._history(d)
        asked, answer = d.asked, d.answer
        if not self.config.shift_positions:  # the order a retriever would list them in
            by_score = np.argsort(-hint, kind="stable")
            asked, hint = asked[by_score], hint[by_score]
            answer = np.argsort(by_score)[answer]
        hint_order = np.argsort(-hint, kind="stable") if self._shows_hint(d, hint) else None
        top = self.renderer.listwise_top
        history_rng = copy.deepcopy(rng)  # the second view shows the same history in the same order
        prompt = self.renderer.listwise(history, d.candidates.items[asked], answer_order=answer,
                                        hint_order=hint_order, rng=rng)
        permutation = np.empty(len(answer), dtype=np.int64)
        permutation[answer] = np.arange(len(answer))
        record = self._record("listwise", d, prompt, permutation.tolist(),
                              None if hint_order is None else hint_order.tolist(), asked=asked)
        record.update(identifiers=list(IDENTIFIERS[: len(asked)]), top=min(top, len(asked)))
        record["shuffled"] = self._shuffled_view(d, history, asked, answer, hint_order, history_rng)
        return record

    def _shuffled_view(self, d: Draft, history: tuple[np.ndarray, np.ndarray], asked: np.ndarray,
                       answer: np.ndarray, hint_order: np.ndarray | None,
                       rng: np.random.Generator | None) -> dict[str, Any]:
        """The same listwise instance with its candidates shown in another order (the second view
        of ALRO's permutation-sensitive loss): its messages and `order`, where order[p] is the
        position in the first view of the candidate shown at position p. Drawn from its own
        generator, so the first view is the same with or without it."""
        shuffle = np.random.default_rng([self.config.seed, TASK_INDEX["listwise"], d.index, 1]).permutation(len(asked))
        if len(asked) > 1 and (shuffle == np.arange(len(asked))).all():
            shuffle = np.roll(shuffle, 1)
        moved = np.argsort(shuffle)  # first-view position -> second-view position
        prompt = self.renderer.listwise(
            history, d.candidates.items[asked[shuffle]], answer_order=moved[answer],
            hint_order=None if hint_order is None else moved[hint_order], rng=rng)
        return {"messages": prompt.with_answer(), "order": shuffle.tolist()}

    def _record(self, task: str, d: Draft, prompt, permutation: list[int], hint_value: Any,
                asked: np.ndarray | None = None) -> dict[str, Any]:
        asked = d.asked if asked is None else asked
        items = d.candidates.items[asked]
        hint = None
        if hint_value is not None:
            model = self.config.hints.rating_model if task == "pointwise" else self.config.hints.ranking_model
            cross = self.hints is not None and self.hints.cross_fitted and self.config.hints.cross_fit
            hint = {"model": model, "fold_model": d.fold if cross else None, "value": hint_value}
        return {
            "messages": prompt.with_answer(),
            "task": task,
            "instance": d.index,
            "user": str(self.dataset.user_ids[d.user]),
            "user_code": d.user,
            "fold": d.fold,
            "items": [str(self.dataset.item_ids[i]) for i in items],
            "item_codes": items.tolist(),
            "labels": d.candidates.grades[asked].tolist(),
            "permutation": list(permutation),
            "history": prompt.history,
            "hint": hint,
            "candidates": d.source,
        }
