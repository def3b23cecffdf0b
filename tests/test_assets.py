import io
import subprocess
import zipfile
from pathlib import Path

import pytest

from recranker import assets

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t3\t891717742\n"


@pytest.fixture()
def fake_home(tmp_path, monkeypatch):
    monkeypatch.setenv("RECRANKER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fake_pip_download(wheel_dir: Path, inter: str):
    def run(command, **kwargs):
        target = Path(command[command.index("-d") + 1])
        with zipfile.ZipFile(target / "recbole-1.2.1-py3-none-any.whl", "w") as z:
            for suffix, text in (("inter", inter), ("item", "item_id:token\n242\n302\n"), ("user", "user_id:token\n")):
                z.writestr(f"{assets.RECBOLE_ML100K}ml-100k.{suffix}", text)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def offline_grouplens(folder: Path) -> None:
    raise OSError("network unreachable")


def test_falls_back_to_the_wheel_and_verifies_the_checksum(fake_home, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER))
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    path = assets.fetch("ml-100k")
    assert path == fake_home / "ml-100k" and (path / "ml-100k.inter").read_text() == INTER
    assert assets.fetched_source("ml-100k") == "wheel" and assets.is_fetched("ml-100k")
    assert assets.fetch("ml-100k") == path  # cached: no second download
    assert [p.name for p in fake_home.iterdir()] == ["ml-100k"]


def test_checksum_mismatch_fails_and_leaves_nothing(fake_home, monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(assets._FETCHERS, "grouplens", offline_grouplens)
    monkeypatch.setattr(assets.subprocess, "run", fake_pip_download(tmp_path, INTER))
    with pytest.raises(assets.FetchError, match="checksum mismatch from wheel"):
        assets.fetch("ml-100k")
    assert not assets.is_fetched("ml-100k")
    assert list(fake_home.iterdir()) == []


def test_grouplens_and_wheel_copies_share_one_checksum(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "ml-100k.inter").write_text(INTER)
    (tmp_path / "b" / "u.data").write_text("186\t302\t3\t891717742\n196\t242\t3\t881250949\n")
    assert assets.ml100k_content_sha256(tmp_path / "a") == assets.ml100k_content_sha256(tmp_path / "b")


def test_missing_asset_says_how_to_fetch(fake_home) -> None:
    with pytest.raises(assets.FetchError, match="recranker fetch ml-100k"):
        assets.require("ml-100k")
    with pytest.raises(assets.FetchError, match="unknown asset"):
        assets.fetch("ml-20m")


@pytest.mark.slow
def test_real_fetched_copy_verifies() -> None:
    if not assets.is_fetched("ml-100k"):
        pytest.skip("ml-100k not fetched")
    assert assets.ml100k_content_sha256(assets.require("ml-100k")) == assets.ML100K_CONTENT_SHA256


def test_grouplens_archive_is_read_and_verified(fake_home, monkeypatch) -> None:
    u_data = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
    u_item = "242|Kolya (1996)|24-Jan-1997||url|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        for member, text in (("u.data", u_data), ("u.item", u_item), ("README", "MovieLens")):
            z.writestr(f"ml-100k/{member}", text)

    def fake_urlopen(url, timeout):
        assert url == assets.GROUPLENS_ML100K
        return io.BytesIO(blob.getvalue())

    monkeypatch.setattr(assets.urllib.request, "urlopen", fake_urlopen)
    monkeypatch.setattr(assets, "ML100K_CONTENT_SHA256", assets.ml100k_content_sha256_of_lines(INTER.splitlines()[1:]))
    path = assets.fetch("ml-100k")
    assert (path / "u.data").read_text() == u_data and (path / "u.item").read_text() == u_item
    assert assets.fetched_source("ml-100k") == "grouplens"
