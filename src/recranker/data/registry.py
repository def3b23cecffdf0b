"""Dataset formats by name: `load_dataset("ml-100k", "data/ml-100k")`.

| format         | path                          | options                                |
|----------------|-------------------------------|----------------------------------------|
| `ml-100k`      | folder of `u.data`, `u.item`  | feedback                               |
| `ml-1m`        | folder of `ratings.dat`, ...  | feedback                               |
| `bookcrossing` | folder of `BX-*.csv`          | core, feedback                         |
| `amazon`       | reviews JSON lines            | meta_path, name, core, feedback        |
| `recbole`      | folder of `<name>.inter`      | name, implicit, feedback               |
| `csv`          | log CSV                       | items_path, name, sep, implicit, feedback |

The study config also takes `format: planted` (generated data, no path: `recranker.data.planted`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from recranker.data.amazon import load_amazon
from recranker.data.bookcrossing import load_bookcrossing
from recranker.data.csvlog import load_csv
from recranker.data.dataset import Dataset
from recranker.data.movielens import load_movielens_1m, load_movielens_100k
from recranker.data.recbole import load_recbole
from recranker.errors import ConfigError

FORMATS: Mapping[str, Callable[..., Dataset]] = MappingProxyType(
    {
        "ml-100k": load_movielens_100k,
        "ml-1m": load_movielens_1m,
        "bookcrossing": load_bookcrossing,
        "amazon": load_amazon,
        "recbole": load_recbole,
        "csv": load_csv,
    }
)
"""Each format's loader; it takes the path first and the format's options by keyword."""


def load_dataset(format: str, path: str | Path, **options: Any) -> Dataset:
    """Load the dataset at `path` with the loader of `format` (one of `FORMATS`).

    An unknown format or an option the loader does not take is a `ConfigError`. A leading `~` in
    `path` or in an option ending in `path` is expanded to the home directory.
    """
    loader = FORMATS.get(format)
    if loader is None:
        known = ", ".join(FORMATS)
        raise ConfigError(f"unknown dataset format {format!r}; known formats: {known}")
    path = Path(path).expanduser()
    options = {
        key: Path(value).expanduser() if key.endswith("path") and isinstance(value, (str, Path)) else value
        for key, value in options.items()
    }
    try:
        inspect.signature(loader).bind(path, **options)
    except TypeError as exc:
        raise ConfigError(f"dataset format {format!r}: {exc}") from None
    return loader(path, **options)
