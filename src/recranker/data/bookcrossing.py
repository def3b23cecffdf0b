"""Loader for Book-Crossing (Ziegler et al., 2005): `BX-Book-Ratings.csv` and `BX-Books.csv`.

Both files are semicolon-separated, every field double-quoted, latin-1:
`"User-ID";"ISBN";"Book-Rating"` and `"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";...`.
`BX-Users.csv` (location, age) is not needed and not read.

How the raw data becomes a `Dataset` (the choices the paper's "10-core BookCrossing" leaves open):

- Time: Book-Crossing has no timestamps, so the time-ordered leave-one-out cannot apply as such.
  `order="random"` (the default) gives each rating a seeded random rank as its timestamp: the
  split is then a seeded random leave-one-out (the held-out liked books are drawn at random), and a
  history's order carries no information (sequential backbones get none to learn). `order="file"`
  uses the line of a rating in `BX-Book-Ratings.csv`; within a user the file is sorted by ISBN
  (all but 40 of 105,283 users), so "the last liked book" would be the largest ISBN, which follows
  the publisher's country and group: a bias, not time.
- Ratings are 0-10, where 0 is an implicit interaction: 0 ratings are dropped and the explicit
  1-10 are mapped to the 1-5 scale as ceil(r / 2) (1-2 -> 1, 3-4 -> 2, ..., 9-10 -> 5), so the
  usual feedback thresholds (liked >= 4, disliked <= 2) apply.
- Ratings of ISBNs missing from `BX-Books.csv` (the real file has many) are dropped and counted
  in the log, not reported as errors.
- Last, the iterative k-core filter (`core`, default 10) keeps users and books with at least
  `core` ratings each.
"""

from __future__ import annotations

import csv
import html
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from recranker.data.dataset import Dataset, Feedback
from recranker.data.filters import apply_k_core, drop_unknown_items
from recranker.data.tables import four_digit_year, parse_numbers, read_table, require_columns
from recranker.errors import DataError

log = logging.getLogger(__name__)

RATINGS_FILE = "BX-Book-Ratings.csv"
BOOKS_FILE = "BX-Books.csv"
BOOK_COLUMNS = {
    "ISBN": "item",
    "Book-Title": "title",
    "Book-Author": "author",
    "Year-Of-Publication": "year",
}
"""Columns of `BX-Books.csv` that are read, and the item-frame column each one fills."""


ORDERS = ("random", "file")
"""What stands for time in Book-Crossing (see the module docstring)."""


def load_bookcrossing(
    directory: str | Path, *, core: int = 10, order: str = "random", seed: int = 0,
    feedback: Feedback | None = None
) -> Dataset:
    """Load Book-Crossing from `directory` as the dataset "bookcrossing".

    Keeps the explicit ratings (1-10, mapped to 1-5 as ceil(r / 2)) of books listed in
    `BX-Books.csv`, with `order` as time ("random": a seeded random order, `seed`; "file": the line
    order), then the `core`-core (0 or 1 disables it). Item text: title, author and year of
    publication. See the module docstring for the reasons.
    """
    if order not in ORDERS:
        raise DataError(directory, f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    directory = Path(directory)
    ratings_path, books_path = directory / RATINGS_FILE, directory / BOOKS_FILE
    ratings = _read_ratings(ratings_path)
    if order == "random":  # a random rank per rating, the same for the same file and seed
        ratings["timestamp"] = np.random.default_rng(seed).permutation(len(ratings))
    books = _read_books(books_path)
    ratings = drop_unknown_items(ratings, books, path=ratings_path)
    ratings = apply_k_core(ratings, core, path=ratings_path)
    return Dataset.from_frames(
        "bookcrossing",
        ratings,
        books[books["item"].isin(ratings["item"])],
        log_path=ratings_path,
        items_path=books_path,
        feedback=feedback,
    )


def _read_ratings(path: Path) -> pd.DataFrame:
    """Explicit ratings on the 1-5 scale, with the line as timestamp."""
    frame = read_table(
        path,
        sep=";",
        quoting=csv.QUOTE_MINIMAL,
        encoding="latin-1",
        required=("User-ID", "ISBN", "Book-Rating"),
    )
    frame = frame.rename(columns={"User-ID": "user", "ISBN": "item", "Book-Rating": "rating"})
    rating = parse_numbers(frame, "rating", path, float)  # names the line of a non-number
    outside = ~rating.between(0, 10).to_numpy()
    if outside.any():
        row = frame[outside].iloc[0]
        raise DataError(path, f"rating {row['rating']!r} is outside 0-10", line=int(row["line"]))
    explicit = rating.gt(0).to_numpy()
    if not explicit.any():
        raise DataError(path, "no explicit ratings: every rating is 0 (implicit)")
    log.info("%s: dropped %d implicit (0) ratings of %d", path, int((~explicit).sum()), len(frame))
    return pd.DataFrame(
        {
            "user": frame["user"].to_numpy()[explicit],
            "item": frame["item"].to_numpy()[explicit],
            "rating": np.ceil(rating.to_numpy()[explicit] / 2),
            "timestamp": frame["line"].to_numpy()[explicit],
            "line": frame["line"].to_numpy()[explicit],
        }
    )


def _read_books(path: Path) -> pd.DataFrame:
    """The item frame of `BX-Books.csv`: ISBN, title, author, year.

    The file quotes every field but escapes quotes inside titles as `\\"` (and some titles end in
    a backslash), which a CSV parser misreads; splitting each line on `";"` and removing the quote
    at its two ends reads every row.
    """
    frame = read_table(path, sep='";"', quoting=csv.QUOTE_NONE, encoding="latin-1")
    names = [str(c) for c in frame.columns if c != "line"]
    frame[names[0]] = frame[names[0]].str.removeprefix('"')
    frame[names[-1]] = frame[names[-1]].str.removesuffix('"')
    frame.columns = [name.strip('"') for name in names] + ["line"]
    require_columns(frame, BOOK_COLUMNS, path)
    books = frame[[*BOOK_COLUMNS, "line"]].rename(columns=BOOK_COLUMNS)
    for column in ("title", "author"):
        books[column] = [_unescape(text) for text in books[column]]
    books["year"] = [four_digit_year(text) for text in books["year"]]
    return books


def _unescape(text: str) -> str:
    """`Real \\"J. Peterman\\" &amp; Co` -> `Real "J. Peterman" & Co`; a trailing `\\` goes."""
    return html.unescape(text.replace('\\"', '"')).rstrip("\\")
