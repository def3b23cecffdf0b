"""Reading a listwise answer: the identifiers a model wrote, repaired into a full order."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: status of a parsed answer
OK, REPAIRED, UNPARSABLE = 0, 1, 2
STATUS_NAMES = ("ok", "repaired", "unparsable")
_TOKEN = re.compile(r"[A-Za-z0-9]+")


def parse_order(text: str, identifiers: Sequence[str], top: int, fallback: Sequence[int]) -> tuple[np.ndarray, int]:
    """The order a listwise answer gives, as positions into `identifiers`, best first, all of them.

    Each standalone identifier in `text` ("B", "B.", "(B)", "b") is read in turn; repeats and
    words that are not identifiers are skipped. Positions the answer does not name follow in
    `fallback` order (the backbone's order, best first). The status is OK when the answer names
    `top` distinct identifiers (or all) and nothing else that looks like one, REPAIRED when it
    names some but also repeats, unknown identifiers (a letter beyond the candidates) or too few,
    UNPARSABLE when it names none (the order is then `fallback`).

    >>> parse_order("B\\nA\\nB\\nZ", "ABCD", 3, [0, 1, 2, 3])
    (array([1, 0, 2, 3]), 1)
    >>> parse_order("C\\nA", "ABC", 2, [0, 1, 2])
    (array([2, 0, 1]), 0)
    """
    index = {name.upper(): k for k, name in enumerate(identifiers)}
    named: list[int] = []
    flawed = False
    for word in _TOKEN.findall(text):
        key = word.upper()
        if len(word) != 1 or not word.isalpha():
            continue  # a word of a title, a number: not an identifier
        if key not in index or index[key] in named:
            flawed = True  # a letter beyond the candidates, or a repeat
            continue
        named.append(index[key])
    if not named:
        return np.asarray(list(fallback), dtype=np.int64), UNPARSABLE
    rest = [k for k in fallback if k not in named]
    wanted = min(top, len(identifiers))
    status = REPAIRED if flawed or len(named) < wanted else OK
    return np.asarray(named + rest, dtype=np.int64), status
