"""MovieLens loaders for the original GroupLens files of ML-100K and ML-1M.

ML-100K: `u.data` (tab-separated user, item, rating, timestamp; no header) and `u.item`
(pipe-separated, latin-1: id, title, release date, video release date, IMDb URL and 19 genre
flags). ML-1M: `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) and `movies.dat`
(`MovieID::Title::Genres`, genres separated by `|`, latin-1). Titles carry their year,
"Toy Story (1995)"; the loaders split it into title "Toy Story" and year "1995".
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from recranker.data.dataset import Dataset, Feedback
from recranker.data.recbole import load_recbole
from recranker.data.tables import read_table
from recranker.errors import DataError

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of `u.item`, in file order (also in `u.genre`)."""

_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)$")
_DATE_YEAR = re.compile(r"(\d{4})$")


def split_title(title: str) -> tuple[str, str]:
    """Split a MovieLens title into the title and the year in its trailing "(YYYY)".

    >>> split_title("Toy Story (1995)")
    ('Toy Story', '1995')
    >>> split_title("unknown")
    ('unknown', '')
    """
    title = title.strip()
    match = _TITLE_YEAR.match(title)
    if match is None:
        return title, ""
    return match["title"], match["year"]


def load_movielens_100k(directory: str | Path, *, feedback: Feedback | None = None) -> Dataset:
    """Load MovieLens-100K from `directory` as the dataset "ml-100k".

    Reads the GroupLens files `u.data` and `u.item`; a directory that holds RecBole's atomic
    files (`ml-100k.inter`, `ml-100k.item`) instead is read by `load_recbole`. Item text: title,
    year (from the title, else from the release date) and genres ("Animation, Comedy"; the
    "unknown" genre flag gives no genre).
    """
    directory = Path(directory)
    log_path, items_path = directory / "u.data", directory / "u.item"
    if not log_path.exists():
        if (directory / "ml-100k.inter").exists():
            return load_recbole(directory, "ml-100k", feedback=feedback)
        raise DataError(
            directory,
            "no MovieLens-100K files: expected u.data and u.item (GroupLens) "
            "or ml-100k.inter (RecBole)",
        )
    ratings = read_table(log_path, sep="\t", columns=["user", "item", "rating", "timestamp"])
    item_columns = ["item", "title", "release_date", "video_release_date", "url", *GENRES_100K]
    movies = read_table(items_path, sep="|", columns=item_columns, encoding="latin-1")
    return Dataset.from_frames(
        "ml-100k",
        ratings,
        _items_100k(movies),
        log_path=log_path,
        items_path=items_path,
        feedback=feedback,
    )


def load_movielens_1m(directory: str | Path, *, feedback: Feedback | None = None) -> Dataset:
    """Load MovieLens-1M from `ratings.dat` and `movies.dat` in `directory` as "ml-1m".

    Item text: title and year (split from the title) and genres ("Animation, Comedy").
    """
    directory = Path(directory)
    log_path, items_path = directory / "ratings.dat", directory / "movies.dat"
    ratings = read_table(log_path, sep="::", columns=["user", "item", "rating", "timestamp"])
    movies = read_table(items_path, sep="::", columns=["item", "title", "genres"], encoding="latin-1")
    titles, years = _split_titles(movies["title"])
    items = pd.DataFrame(
        {
            "item": movies["item"],
            "title": titles,
            "year": years,
            "genres": [", ".join(g for g in text.split("|") if g) for text in movies["genres"]],
            "line": movies["line"],
        }
    )
    return Dataset.from_frames(
        "ml-1m", ratings, items, log_path=log_path, items_path=items_path, feedback=feedback
    )


def _items_100k(movies: pd.DataFrame) -> pd.DataFrame:
    """The item frame of `u.item`: title and year split, genre flags joined into one text."""
    titles, years = _split_titles(movies["title"])
    release_years = [_date_year(date) for date in movies["release_date"]]
    flags = movies[list(GENRES_100K)].apply(lambda column: column.str.strip().eq("1")).to_numpy()
    genres = [
        ", ".join(genre for genre, on in zip(GENRES_100K, row) if on and genre != "unknown")
        for row in flags
    ]
    return pd.DataFrame(
        {
            "item": movies["item"],
            "title": titles,
            "year": [year or release for year, release in zip(years, release_years)],
            "genres": genres,
            "line": movies["line"],
        }
    )


def _split_titles(titles: pd.Series) -> tuple[list[str], list[str]]:
    pairs = [split_title(title) for title in titles]
    return [title for title, _ in pairs], [year for _, year in pairs]


def _date_year(date: str) -> str:
    """The year of a release date like "01-Jan-1995"; empty when there is none."""
    match = _DATE_YEAR.search(date.strip())
    return match[1] if match else ""
