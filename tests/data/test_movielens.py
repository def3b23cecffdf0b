"""MovieLens-100K and -1M from files in the GroupLens formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from recranker.data.dataset import Feedback
from recranker.data.movielens import GENRES_100K, load_movielens_1m, load_movielens_100k, split_title
from recranker.errors import DataError

U_DATA = (
    "196\t1\t3\t881250949\n"
    "186\t2\t5\t891717742\n"
    "196\t267\t1\t881250000\n"
    "22\t3\t4\t878887116\n"
    "196\t2\t4\t881251000\n"
)


def _u_item_row(item: int, title: str, date: str, *genres: str) -> str:
    flags = "|".join("1" if genre in genres else "0" for genre in GENRES_100K)
    url = f"http://us.imdb.com/M/title-exact?{title.replace(' ', '%20')}" if title != "unknown" else ""
    return f"{item}|{title}|{date}||{url}|{flags}\n"


def _write_100k(directory: Path, u_data: str = U_DATA) -> Path:
    (directory / "u.data").write_text(u_data)
    rows = (
        _u_item_row(1, "Toy Story (1995)", "01-Jan-1995", "Animation", "Children's", "Comedy")
        + _u_item_row(2, "Misérables, Les (1995)", "01-Jan-1995", "Drama", "Musical")
        + _u_item_row(3, "Some Film", "12-Mar-1997", "Drama")
        + _u_item_row(267, "unknown", "", "unknown")
    )
    (directory / "u.item").write_bytes(rows.encode("latin-1"))
    return directory


def test_split_title() -> None:
    assert split_title("Toy Story (1995)") == ("Toy Story", "1995")
    assert split_title("City of Lost Children, The (Cité des enfants perdus, La) (1995) ") == (
        "City of Lost Children, The (Cité des enfants perdus, La)",
        "1995",
    )
    assert split_title("unknown") == ("unknown", "")


def test_100k(tmp_path: Path) -> None:
    data = load_movielens_100k(_write_100k(tmp_path))
    assert data.name == "ml-100k" and not data.implicit
    assert data.user_ids.tolist() == ["186", "196", "22"]
    assert data.item_ids.tolist() == ["1", "2", "267", "3"]
    frame = data.interactions
    assert len(frame) == 5
    assert frame["user"].tolist() == [0, 1, 1, 1, 2]
    assert frame["item"].tolist() == [1, 2, 0, 1, 3]
    assert frame["timestamp"].tolist() == [891717742, 881250000, 881250949, 881251000, 878887116]
    assert frame["rating"].tolist() == [5.0, 1.0, 3.0, 4.0, 4.0]
    items = data.items
    assert items["title"].tolist() == ["Toy Story", "Misérables, Les", "unknown", "Some Film"]
    assert items["year"].tolist() == ["1995", "1995", "", "1997"]  # no year in the title: the date's
    assert items["genres"].tolist() == ["Animation, Children's, Comedy", "Drama, Musical", "", "Drama"]
    assert items["author"].tolist() == ["", "", "", ""]


def test_100k_feedback_is_passed_on(tmp_path: Path) -> None:
    data = load_movielens_100k(_write_100k(tmp_path), feedback=Feedback(liked_min=5.0))
    assert data.stats()["liked"] == 1


def test_100k_from_recbole_files(tmp_path: Path) -> None:
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n"
    )
    (tmp_path / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n"
    )
    data = load_movielens_100k(tmp_path)
    assert data.name == "ml-100k"
    assert data.titles([0]) == ["Kolya"]
    assert data.interactions["timestamp"].tolist() == [881250949]


def test_100k_no_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no MovieLens-100K files") as excinfo:
        load_movielens_100k(tmp_path)
    assert excinfo.value.path == str(tmp_path)


def test_100k_unknown_item(tmp_path: Path) -> None:
    _write_100k(tmp_path, U_DATA + "196\t999\t3\t881250949\n")
    with pytest.raises(DataError) as excinfo:
        load_movielens_100k(tmp_path)
    log_path, items_path = tmp_path / "u.data", tmp_path / "u.item"
    assert str(excinfo.value) == f"{log_path}, line 6: item '999' is not in the item table {items_path}"


def test_100k_non_numeric_rating(tmp_path: Path) -> None:
    _write_100k(tmp_path, "196\t1\t3\t881250949\n186\t2\tx\t891717742\n")
    with pytest.raises(DataError) as excinfo:
        load_movielens_100k(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'u.data'}, line 2: rating 'x' is not a number"


def test_100k_blank_lines_before_a_bad_rating(tmp_path: Path) -> None:
    _write_100k(tmp_path, "196\t1\t3\t881250949\n\n \n186\t2\tx\t891717742\n")
    with pytest.raises(DataError) as excinfo:
        load_movielens_100k(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'u.data'}, line 4: rating 'x' is not a number"


def test_100k_empty_u_data(tmp_path: Path) -> None:
    _write_100k(tmp_path, "")
    with pytest.raises(DataError) as excinfo:
        load_movielens_100k(tmp_path)
    assert str(excinfo.value) == f"{tmp_path / 'u.data'}: the file is empty"


def _write_1m(directory: Path, ratings: str) -> Path:
    (directory / "ratings.dat").write_text(ratings)
    movies = (
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "29::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure|Sci-Fi\n"
        "3952::Contender, The (2000)::Drama|Thriller\n"
    )
    (directory / "movies.dat").write_bytes(movies.encode("latin-1"))
    return directory


def test_1m(tmp_path: Path) -> None:
    ratings = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::29::2::978298000\n"
    data = load_movielens_1m(_write_1m(tmp_path, ratings))
    assert data.name == "ml-1m"
    assert (data.n_users, data.n_items) == (2, 3)  # 3952 is never rated
    assert data.item_ids.tolist() == ["1193", "29", "661"]
    frame = data.interactions
    assert frame["item"].tolist() == [0, 2, 1, 0]
    assert frame["rating"].tolist() == [5.0, 3.0, 2.0, 4.0]
    assert frame["timestamp"].tolist() == [978300760, 978302109, 978298000, 978298413]
    assert data.items["title"].tolist() == [
        "One Flew Over the Cuckoo's Nest",
        "City of Lost Children, The (Cité des enfants perdus, La)",
        "James and the Giant Peach",
    ]
    assert data.items["year"].tolist() == ["1975", "1995", "1996"]
    assert data.items["genres"].tolist() == ["Drama", "Adventure, Sci-Fi", "Animation, Children's, Musical"]


def test_1m_duplicate_rating(tmp_path: Path) -> None:
    _write_1m(tmp_path, "1::1193::5::978300760\n1::661::3::978302109\n1::1193::4::978300800\n")
    with pytest.raises(DataError) as excinfo:
        load_movielens_1m(tmp_path)
    assert str(excinfo.value) == (
        f"{tmp_path / 'ratings.dat'}, line 3: duplicate interaction of user '1' with item '1193' "
        "(also on line 1)"
    )


def test_1m_blank_lines_before_an_unknown_item(tmp_path: Path) -> None:
    _write_1m(tmp_path, "1::1193::5::978300760\n\n  \n1::7::3::978302109\n\n")
    with pytest.raises(DataError) as excinfo:
        load_movielens_1m(tmp_path)
    assert str(excinfo.value) == (
        f"{tmp_path / 'ratings.dat'}, line 4: item '7' is not in the item table {tmp_path / 'movies.dat'}"
    )


def test_1m_unknown_item(tmp_path: Path) -> None:
    _write_1m(tmp_path, "1::1193::5::978300760\n1::7::3::978302109\n")
    with pytest.raises(DataError) as excinfo:
        load_movielens_1m(tmp_path)
    assert excinfo.value.line == 2 and "item '7' is not in the item table" in str(excinfo.value)
    assert str(excinfo.value).startswith(f"{tmp_path / 'ratings.dat'}, line 2:")


def test_1m_crlf_files_as_distributed_read_as_lf(tmp_path: Path) -> None:
    # the real ratings.dat and movies.dat end their lines with CRLF
    ratings = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n2::29::2::978298000\n"
    lf = load_movielens_1m(_write_1m(tmp_path, ratings))
    crlf_dir = tmp_path / "crlf"
    crlf_dir.mkdir()
    _write_1m(crlf_dir, "")
    (crlf_dir / "ratings.dat").write_bytes(ratings.replace("\n", "\r\n").encode())
    movies = (tmp_path / "movies.dat").read_bytes().replace(b"\n", b"\r\n")
    (crlf_dir / "movies.dat").write_bytes(movies)
    crlf = load_movielens_1m(crlf_dir)
    assert crlf.interactions.equals(lf.interactions)
    assert crlf.items.equals(lf.items)  # no title or genre keeps a stray carriage return
    (crlf_dir / "ratings.dat").write_bytes(b"1::1193::5::978300760\r\n1::661::x::978302109\r\n")
    with pytest.raises(DataError, match="line 2: rating 'x' is not a number"):
        load_movielens_1m(crlf_dir)
