"""Text helpers for prompts: cleaned titles, token counts, chat rendering.

Token counts come from the model's tokenizer when one is given; without one they are estimated
as one token per four characters (and reported as estimates).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_ARTICLES = "The|A|An|Les|La|Le|L'|Il|Lo|Das|Der|Die|El|Los|Las|Den|Det"
#: "Shawshank Redemption, The (1994)" -> "The Shawshank Redemption (1994)"
_TRAILING_ARTICLE = re.compile(rf"^(?P<name>.+?), (?P<article>{_ARTICLES})(?P<rest>\s*\(.*\))?$")
_TRAILING_YEAR = re.compile(r"\s*\(\d{4}\)$")


def clean_title(title: str, max_chars: int = 80) -> str:
    """A title as a person would write it: whitespace collapsed, a trailing article moved to the
    front, and at most `max_chars` characters (a trailing "(year)" is kept when cutting).

    >>> clean_title("Shawshank Redemption, The (1994)")
    'The Shawshank Redemption (1994)'
    >>> clean_title("A very long title indeed (1999)", max_chars=20)
    'A very long... (1999)'
    """
    text = " ".join(str(title).split()).strip("\"' ")
    match = _TRAILING_ARTICLE.match(text)
    if match:
        article = match["article"]
        joiner = "" if article.endswith("'") else " "
        text = f"{article}{joiner}{match['name']}{match['rest'] or ''}"
    if len(text) <= max_chars:
        return text
    year = _TRAILING_YEAR.search(text)
    tail = year.group(0) if year else ""
    room = max(1, max_chars - len(tail) - 3)
    return text[: len(text) - len(tail)][:room].rstrip() + "..." + tail


class TokenCounter:
    """Counts tokens of texts with `tokenizer` (cached per text), or estimates len/4 without one.

    The cache holds at most `max_cached` texts (it is emptied when full): a service counting the
    free titles of every request must not grow without bound. A study's distinct lines (the
    catalogue's titles times the ratings shown) stay well below the default."""

    def __init__(self, tokenizer: Any | None = None, max_cached: int = 1 << 17) -> None:
        if max_cached < 1:
            raise ValueError("max_cached must be at least 1")
        self.tokenizer, self.max_cached = tokenizer, max_cached
        self._cache: dict[str, int] = {}

    @property
    def exact(self) -> bool:
        """Whether counts come from a real tokenizer."""
        return self.tokenizer is not None

    def count(self, texts: Sequence[str]) -> np.ndarray:
        """(n,) token counts of `texts` (no special tokens)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if not missing:
            return np.array([self._cache[t] for t in texts], dtype=np.int64)
        if self.tokenizer is None:
            counts = [max(1, (len(t) + 3) // 4) for t in missing]
        else:
            counts = [len(ids) for ids in self.tokenizer(missing, add_special_tokens=False)["input_ids"]]
        new = dict(zip(missing, counts))
        out = np.array([new[t] if t in new else self._cache[t] for t in texts], dtype=np.int64)
        if len(self._cache) + len(new) > self.max_cached:
            self._cache.clear()
        if len(new) <= self.max_cached:
            self._cache.update(new)
        return out


def chat_text(messages: list[dict[str, str]], tokenizer: Any | None = None, *, generation_prompt: bool = False) -> str:
    """`messages` rendered with the tokenizer's chat template; without a tokenizer (or template),
    in ChatML, the format of the default model."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation_prompt else "")
