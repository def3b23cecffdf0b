"""Book-Crossing from its three semicolon-separated, fully quoted, latin-1 CSV files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recranker.data.bookcrossing import load_bookcrossing
from recranker.errors import DataError

RATINGS = [
    ("276725", "034545104X", "0"),  # line 2: implicit, dropped
    ("276726", "0155061224", "5"),  # line 3 -> 3
    ("276727", "0446520802", "0"),  # line 4: implicit, dropped
    ("276729", "052165615X", "3"),  # line 5 -> 2
    ("276726", "052165615X", "10"),  # line 6 -> 5
    ("276729", "0155061224", "8"),  # line 7 -> 4
    ("276729", "9999999999", "7"),  # line 8: not in BX-Books, dropped
    ("276730", "0155061224", "9"),  # line 9: the user's only rating, out in the 2-core
    ("276726", "0446520802", "1"),  # line 10: the book's only rating, out in the 2-core
]
BOOKS_HEADER = (
    '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";'
    '"Image-URL-S";"Image-URL-M";"Image-URL-L"\n'
)
BOOKS = [
    (
        "0155061224",
        'Peterman Rides Again: Adventures Continue with the Real \\"J. Peterman\\" Through Life '
        "&amp; the Catalog Business",
        "John Peterman",
        "2000",
    ),
    (
        "052165615X",
        "DK Readers: Creating the X-Men; How It All Began (Level 4: Proficient Readers)\\",
        "Gabriel García Márquez",
        "0",
    ),
    ("0446520802", "The Notebook", "Nicholas Sparks", "1996"),
    ("034545104X", "Flu: The Story of the Great Influenza Pandemic", "Gina Bari Kolata", "1999"),
]


def _quoted(*fields: str) -> str:
    return ";".join(f'"{field}"' for field in fields) + "\n"


def _write(directory: Path, ratings: list[tuple[str, ...]] = RATINGS, books: str | None = None) -> Path:
    text = _quoted("User-ID", "ISBN", "Book-Rating") + "".join(_quoted(*row) for row in ratings)
    (directory / "BX-Book-Ratings.csv").write_bytes(text.encode("latin-1"))
    if books is None:
        url = "http://images.amazon.com/images/P/{}.01.THUMBZZZ.jpg"
        books = BOOKS_HEADER + "".join(_quoted(*row, "Publisher", *[url.format(row[0])] * 3) for row in BOOKS)
    (directory / "BX-Books.csv").write_bytes(books.encode("latin-1"))
    (directory / "BX-Users.csv").write_bytes(b'"User-ID";"Location";"Age"\n"1";"nyc, new york, usa";NULL\n')
    return directory


def test_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        data = load_bookcrossing(_write(tmp_path), core=2, order="file")
    assert data.name == "bookcrossing" and not data.implicit
    assert data.user_ids.tolist() == ["276726", "276729"]
    assert data.item_ids.tolist() == ["0155061224", "052165615X"]
    frame = data.interactions
    assert frame["user"].tolist() == [0, 0, 1, 1]
    assert frame["item"].tolist() == [0, 1, 1, 0]
    assert frame["timestamp"].tolist() == [3, 6, 5, 7]  # the line in the file is the time
    assert frame["rating"].tolist() == [3.0, 5.0, 2.0, 4.0]  # ceil(r / 2)
    assert data.titles([0, 1]) == [
        'Peterman Rides Again: Adventures Continue with the Real "J. Peterman" Through Life '
        "& the Catalog Business",
        "DK Readers: Creating the X-Men; How It All Began (Level 4: Proficient Readers)",
    ]
    assert data.items["author"].tolist() == ["John Peterman", "Gabriel García Márquez"]
    assert data.items["year"].tolist() == ["2000", ""]  # year 0 means unknown
    messages = caplog.text
    assert "dropped 2 implicit (0) ratings of 9" in messages
    assert "dropped 1 of 7 interactions whose item is not in the item table" in messages
    assert "the 2-core filter kept 4 of 6 interactions" in messages


def test_default_core_is_10(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no interactions left after the 10-core filter \(6 before\)"):
        load_bookcrossing(_write(tmp_path))


def test_core_disabled_keeps_every_explicit_rating(tmp_path: Path) -> None:
    data = load_bookcrossing(_write(tmp_path), core=0, order="file")
    assert len(data.interactions) == 6 and data.n_items == 3
    assert data.interactions["rating"].tolist() == [3.0, 5.0, 1.0, 2.0, 4.0, 5.0]


def test_non_numeric_rating(tmp_path: Path) -> None:
    _write(tmp_path, RATINGS[:3] + [("276729", "052165615X", "high")])
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path)
    path = tmp_path / "BX-Book-Ratings.csv"
    assert str(excinfo.value) == f"{path}, line 5: rating 'high' is not a number"


def test_blank_lines_before_a_bad_rating(tmp_path: Path) -> None:
    _write(tmp_path)
    path = tmp_path / "BX-Book-Ratings.csv"
    rows = [_quoted("User-ID", "ISBN", "Book-Rating"), *(_quoted(*row) for row in RATINGS[:3])]
    path.write_text("".join(rows) + "\n \n" + _quoted("276729", "052165615X", "high"))
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path)
    assert str(excinfo.value) == f"{path}, line 7: rating 'high' is not a number"


def test_rating_out_of_range(tmp_path: Path) -> None:
    _write(tmp_path, RATINGS[:2] + [("276729", "052165615X", "11")])
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'BX-Book-Ratings.csv'}, line 4: rating '11' is outside 0-10"


def test_only_implicit_ratings(tmp_path: Path) -> None:
    _write(tmp_path, [RATINGS[0], RATINGS[2]])
    with pytest.raises(DataError, match="no explicit ratings: every rating is 0"):
        load_bookcrossing(tmp_path)


@pytest.mark.parametrize("blank, line", [("", 1), ("\n", 2)])  # the header's own line, blank lines counted
def test_missing_column(tmp_path: Path, blank: str, line: int) -> None:
    _write(tmp_path, books=blank + '"ISBN";"Book-Title";"Year-Of-Publication"\n"0155061224";"Title";"2000"\n')
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path)
    assert str(excinfo.value) == (
        f"{tmp_path / 'BX-Books.csv'}, line {line}: missing column 'Book-Author' "
        "(found: ISBN, Book-Title, Year-Of-Publication)"
    )


def test_missing_ratings_column(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "BX-Book-Ratings.csv").write_text('"User-ID";"ISBN"\n"1";"2"\n')
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path)
    assert excinfo.value.line == 1 and "missing column 'Book-Rating'" in excinfo.value.problem


def test_empty_ratings_file(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "BX-Book-Ratings.csv").write_text("")
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'BX-Book-Ratings.csv'}: the file is empty"


def test_duplicate_rating(tmp_path: Path) -> None:
    _write(tmp_path, RATINGS + [("276726", "0155061224", "6")])
    with pytest.raises(DataError) as excinfo:
        load_bookcrossing(tmp_path, core=0)
    assert excinfo.value.line == 11
    assert excinfo.value.problem == (
        "duplicate interaction of user '276726' with item '0155061224' (also on line 3)"
    )


def test_random_order_is_a_seeded_permutation_of_the_same_ratings(tmp_path: Path) -> None:
    directory = _write(tmp_path)
    by_file = load_bookcrossing(directory, core=2, order="file").interactions
    runs = {seed: load_bookcrossing(directory, core=2, seed=seed).interactions for seed in (0, 0, 1, 2, 3)}
    key = ["user", "item", "rating"]
    for frame in runs.values():
        assert sorted(map(tuple, frame[key].to_numpy().tolist())) == sorted(map(tuple, by_file[key].to_numpy().tolist()))
        assert frame["timestamp"].is_unique
    first = load_bookcrossing(directory, core=2, seed=0).interactions
    assert first.equals(runs[0])  # the same seed, the same order
    orders = {tuple(f.sort_values(["user", "item"])["timestamp"].rank().tolist()) for f in runs.values()}
    assert len(orders) > 1  # other seeds, other orders
    with pytest.raises(DataError, match="unknown order 'isbn'"):
        load_bookcrossing(directory, order="isbn")


def test_crlf_files_as_distributed_read_as_lf(tmp_path: Path) -> None:
    lf = load_bookcrossing(_write(tmp_path), core=2, order="file")
    for name in ("BX-Book-Ratings.csv", "BX-Books.csv"):
        path = tmp_path / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    crlf = load_bookcrossing(tmp_path, core=2, order="file")
    assert crlf.interactions.equals(lf.interactions) and crlf.items.equals(lf.items)
    assert not any("\r" in str(v) for v in crlf.items.to_numpy().ravel())
