"""Rendering prompts of the three tasks from a history, candidates and optional hints.

`PromptRenderer` is used identically for training instructions and at inference: the caller
supplies the user's history (most recent first), the items asked about and the hint values; the
renderer truncates the history to a token budget (keeping the most recent interactions), applies
position shifting with the caller's generator, fills the task's template and returns the chat
messages with the answer.
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass, field

import numpy as np

from recranker.data.dataset import Dataset
from recranker.prompts.templates import Template
from recranker.prompts.text import TokenCounter, clean_title

#: single-token candidate identifiers of listwise prompts (A..Z)
IDENTIFIERS: tuple[str, ...] = tuple(string.ascii_uppercase)
#: the most candidates a listwise prompt shows (one identifier each): the bound of the config, the
#: service's requests and its `--max-candidates`
MAX_CANDIDATES = len(IDENTIFIERS)


@dataclass(frozen=True)
class Prompt:
    """One rendered prompt: `messages` (system, user), the `answer` text (training targets) and
    the history items shown, in the order shown."""

    messages: list[dict[str, str]]
    answer: str | None
    history: list[int] = field(default_factory=list)

    def with_answer(self) -> list[dict[str, str]]:
        """The messages followed by the assistant's answer (a training conversation)."""
        if self.answer is None:
            raise ValueError("this prompt has no answer")
        return [*self.messages, {"role": "assistant", "content": self.answer}]


def format_rating(rating: float) -> str:
    """A rating as shown in prompts: "4", or "3.5" when not whole."""
    return str(int(rating)) if float(rating).is_integer() else f"{rating:.1f}"


class PromptRenderer:
    """Fills the templates of one domain for the items of `dataset`.

    `history_tokens` bounds the tokens of the history lines (counted by `counter`, newlines
    included) and `history_items` their number; `title_chars` bounds each cleaned title;
    `listwise_top` is the number of identifiers a listwise answer lists. The study builds every
    renderer, for training and for inference, from `PromptsConfig` (one spec).
    """

    def __init__(self, dataset: Dataset, templates: dict[str, Template], *, counter: TokenCounter,
                 history_tokens: int = 256, history_items: int = 30, title_chars: int = 80,
                 listwise_top: int = 5) -> None:
        self.dataset, self.templates, self.counter = dataset, templates, counter
        self.history_tokens, self.history_items, self.listwise_top = history_tokens, history_items, listwise_top
        self.title_chars = title_chars
        self.titles = [clean_title(t, title_chars) for t in dataset.items["title"].tolist()]

    def with_titles(self, titles: list[str]) -> "PromptRenderer":
        """A renderer that also knows `titles` (free text, cleaned like the catalogue's) as the
        item codes n_items, n_items + 1, ... (history items outside the catalogue, when serving)."""
        extended = copy.copy(self)
        extended.titles = self.titles + [clean_title(t, self.title_chars) for t in titles]
        return extended

    # ----------------------------------------------------------------------------- history
    def history(self, task: str, items: np.ndarray, ratings: np.ndarray,
                rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The history lines of `task` (its template's `history_item`) from items and ratings given
        most recent first: the most recent rated interactions that fit the budget, shuffled with `rng` (position shifting) or, with no
        `rng`, in time order. Every task shows the same lines (RecRanker's prompts all show "the
        historical interactions of a user"), so one user's prompts of all tasks share a prefix.
        Returns the items, ratings and lines, in the order shown."""
        items, ratings = np.asarray(items), np.asarray(ratings)
        template = self.templates[task]
        lines = [template.render("history_item", title=self.titles[i], rating=format_rating(r))
                 for i, r in zip(items[: self.history_items], ratings[: self.history_items])]
        cost = np.cumsum(self.counter.count(lines) + 1) if lines else np.zeros(0, dtype=np.int64)
        n = int(np.searchsorted(cost, self.history_tokens, side="right"))
        order = rng.permutation(n) if rng is not None else np.arange(n)[::-1]
        return items[order], ratings[order], [lines[k] for k in order]

    def _block(self, task: str, lines: list[str]) -> str:
        return "\n".join(lines) if lines else self.templates[task].pieces["empty_history"]

    def _messages(self, task: str, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.templates[task].pieces["system"]},
                {"role": "user", "content": user}]

    # ----------------------------------------------------------------------------- tasks
    def pointwise(self, history: tuple[np.ndarray, np.ndarray], target: int, *, rating: float | None = None,
                  hint: float | None = None, rng: np.random.Generator | None = None) -> Prompt:
        """"How would the user rate `target`?"; `rating` (training) gives the answer, `hint` the
        rating model's prediction."""
        t = self.templates["pointwise"]
        items, _, lines = self.history("pointwise", *history, rng)
        hint_text = "" if hint is None else t.render("hint", rating=f"{hint:.1f}")
        user = t.render_user(history=self._block("pointwise", lines), target=self.titles[target], hint=hint_text)
        answer = None if rating is None else t.render("answer", rating=str(int(np.clip(round(rating), 1, 5))))
        return Prompt(self._messages("pointwise", user), answer, items.tolist())

    def pairwise(self, history: tuple[np.ndarray, np.ndarray], first: int, second: int, *,
                 first_preferred: bool | None = None, hint_first: bool | None = None,
                 rng: np.random.Generator | None = None) -> Prompt:
        """"Would the user prefer `first` over `second`?"; `first_preferred` (training) gives the
        answer, `hint_first` whether the ranking model prefers `first`."""
        t = self.templates["pairwise"]
        items, ratings, lines = self.history("pairwise", *history, rng)
        liked = self.dataset.feedback.liked(ratings)
        disliked = self.dataset.feedback.disliked(ratings)
        hint_text = "" if hint_first is None else t.render(
            "hint", preferred=self.titles[first if hint_first else second], which="first" if hint_first else "second")
        user = t.render_user(
            history=self._block("pairwise", lines),
            liked=self._block("pairwise", [line for line, ok in zip(lines, liked) if ok]),
            disliked=self._block("pairwise", [line for line, bad in zip(lines, disliked) if bad]),
            first=self.titles[first], second=self.titles[second], hint=hint_text,
        )
        answer = None if first_preferred is None else t.pieces["answer_yes" if first_preferred else "answer_no"]
        return Prompt(self._messages("pairwise", user), answer, items.tolist())

    def listwise(self, history: tuple[np.ndarray, np.ndarray], candidates: np.ndarray, *, top: int | None = None,
                 answer_order: np.ndarray | None = None, hint_order: np.ndarray | None = None,
                 rng: np.random.Generator | None = None) -> Prompt:
        """"Rank these candidates" over `candidates` in the order shown (identifier A is
        candidates[0]); `answer_order` (training) and `hint_order` are positions into
        `candidates`, best first; the answer lists the first `top` identifiers (default
        `listwise_top`)."""
        top = self.listwise_top if top is None else top
        t = self.templates["listwise"]
        if len(candidates) > len(IDENTIFIERS):
            raise ValueError(f"at most {len(IDENTIFIERS)} listwise candidates, got {len(candidates)}")
        items, _, lines = self.history("listwise", *history, rng)
        shown = "\n".join(t.render("candidate_item", id=IDENTIFIERS[k], title=self.titles[c])
                          for k, c in enumerate(candidates))
        hint_text = "" if hint_order is None else t.render("hint", order=", ".join(IDENTIFIERS[k] for k in hint_order))
        user = t.render_user(history=self._block("listwise", lines), candidates=shown,
                             count=len(candidates), top=min(top, len(candidates)), hint=hint_text)
        answer = None
        if answer_order is not None:
            answer = t.pieces["answer_separator"].join(IDENTIFIERS[k] for k in answer_order[:top])
        return Prompt(self._messages("listwise", user), answer, items.tolist())
