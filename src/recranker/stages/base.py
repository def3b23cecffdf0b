"""What every stage shares: the run lock around its entry points, the signatures of the files it
reads (so an edited file reruns it), memory and device facts."""

from __future__ import annotations

import functools
import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pandas as pd

from recranker import assets
from recranker.artifacts import atomic_write, run_lock
from recranker.config import StudyConfig
from recranker.errors import DataError


F = TypeVar("F", bound=Callable)


def process_rank() -> int:
    """This process's rank in a distributed launch (`accelerate launch`, torchrun: $RANK), 0 alone."""
    rank = os.environ.get("RANK", "0")
    return int(rank) if rank.isdigit() else 0


def writes_run(func: F) -> F:
    """Run `func(cfg, ...)` holding the lock of `cfg.run_dir` (re-entrant: nested calls share it).
    In a distributed launch only rank 0 holds it (and writes); the other ranks only train."""
    @functools.wraps(func)
    def locked(cfg: StudyConfig, *args, **kwargs):
        if process_rank() > 0:
            return func(cfg, *args, **kwargs)
        with run_lock(cfg.run_dir):
            return func(cfg, *args, **kwargs)
    return locked  # type: ignore[return-value]


def input_signature(path: Path, key: str) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of the file `path` or of every file under the folder `path`, so that a
    stage reading it reruns when any of them changes; a `DataError` naming `key` when it is missing."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"no such file or folder ({key})")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def model_signature(spec: str | None) -> list:
    """`input_signature` of a model given as a local file or folder; empty for the fetched default
    (verified by its checksum) and for a Hugging Face id."""
    if spec is None or spec in assets.DEFAULT_MODEL_NAMES:
        return []
    path = Path(spec).expanduser()
    return input_signature(path, spec) if path.exists() else []


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_write(path) as fh:
        table.to_csv(fh, float_format="%.6g")


def torch_device() -> str:
    """cuda when a GPU is visible, else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
