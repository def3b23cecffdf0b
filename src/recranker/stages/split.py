"""The split stage: load the configured log, split it leave-one-out, check it for leakage.

    split/    dataset.json, interactions.npz, split.npz, stats.json
"""

from __future__ import annotations

import logging
from pathlib import Path

from recranker import assets
from recranker.artifacts import Stage, fingerprint, write_json
from recranker.config import StudyConfig
from recranker.data.config import DataConfig
from recranker.data.dataset import Dataset, Feedback
from recranker.errors import DataError
from recranker.split import Split, check_leakage, leave_one_out
from recranker.stages.base import input_signature, writes_run

log = logging.getLogger(__name__)

#: the data formats whose default copy `recranker fetch <format>` gets
FETCHED_DATA = ("ml-100k", "ml-1m", "bookcrossing")


def data_path(cfg: DataConfig) -> Path:
    """The configured path, or the fetched copy of ML-100K, ML-1M or Book-Crossing."""
    if cfg.path is not None:
        return Path(cfg.path)
    if cfg.format not in FETCHED_DATA:
        raise assets.FetchError(f"data.path is required for format {cfg.format!r} "
                                f"(only {', '.join(FETCHED_DATA)} can be fetched)")
    return assets.require(cfg.format)


def data_files(cfg: DataConfig) -> dict[str, Path]:
    """The files (or folders) the configured loader reads, by config key: `data.path` (or the
    fetched default copy), and `data.items_path` / `data.meta_path` where the format reads them;
    none for the planted format, whose data is a function of `data.planted`."""
    if cfg.format == "planted":
        return {}
    files = {"data.path": data_path(cfg)}
    if cfg.format == "csv" and cfg.items_path is not None:
        files["data.items_path"] = Path(cfg.items_path)
    if cfg.format == "amazon" and cfg.meta_path is not None:
        files["data.meta_path"] = Path(cfg.meta_path)
    for key, path in files.items():
        check_kind(key, Path(path).expanduser(), cfg.format)
    return files


#: the formats whose data.path is one file (the others read a folder)
FILE_FORMATS = ("csv", "amazon")


def check_kind(key: str, path: Path, format: str) -> None:
    """A `DataError` naming `key` when `path` is missing, or is a folder where the format reads a
    file (or the other way round)."""
    if not path.exists():
        raise DataError(path, f"no such file or folder ({key})")
    wants_file = key != "data.path" or format in FILE_FORMATS
    if wants_file and path.is_dir():
        raise DataError(path, f"a folder, but {key} of the {format} format is one file")
    if not wants_file and not path.is_dir():
        raise DataError(path, f"a file, but {key} of the {format} format is a folder")


def load_data(cfg: DataConfig) -> Dataset:
    """Load the configured dataset."""
    from recranker.data.registry import load_dataset

    feedback = Feedback(liked_min=cfg.liked_min, disliked_max=cfg.disliked_max)
    if cfg.format == "planted":
        from recranker.data.planted import planted_dataset

        return planted_dataset(cfg.planted, feedback)
    files = data_files(cfg)
    options: dict[str, object] = {"feedback": feedback}
    options.update({key.removeprefix("data."): path for key, path in files.items() if key != "data.path"})
    if cfg.format in ("csv", "recbole") and cfg.implicit:
        options["implicit"] = True
    if cfg.format == "bookcrossing":
        options.update(order=cfg.order, seed=cfg.order_seed)
    return load_dataset(cfg.format, files["data.path"], **options)


#: version of the split's layout and order: a change rebuilds earlier runs' splits (2: timestamp ties
#: broken by a hash of the (user id, item id) pair, not file order, so the split is a function of the
#: log's content)
SPLIT_FORMAT = 2


def split_stage(cfg: StudyConfig) -> Stage:
    """The split stage of `cfg`'s run (its inputs: the data config and every file the loader reads,
    by size and mtime; for a fetched copy, the checksum of its content)."""
    if cfg.data.path is None and cfg.data.format in FETCHED_DATA:  # the fetched copy: its content, not its mtimes
        signature = [("fetched", cfg.data.format, assets.content_digest(cfg.data.format))]
    else:
        signature = [entry for key, path in data_files(cfg.data).items() for entry in input_signature(path, key)]
    return Stage(cfg.run_dir, "split", inputs=fingerprint(cfg.data.loaded(), signature, SPLIT_FORMAT))


@writes_run
def prepare_split(cfg: StudyConfig) -> Split:
    """Load, split and leakage-check the data, or read the finished split."""
    stage = split_stage(cfg)
    if stage.done():
        log.info("split: done, reading %s", stage.path)
        return Split.load(str(stage.path))
    dataset = load_data(cfg.data)
    split = leave_one_out(dataset, source=str(data_files(cfg.data).get("data.path", dataset.name)))
    check_leakage(split)
    folder = stage.start()
    split.save(str(folder))
    if cfg.data.format == "planted":  # the generated files, for a reader to inspect (truth.csv: each user's word)
        from recranker.data.planted import write_planted

        write_planted(folder / "planted", cfg.data.planted)
    write_json(folder / "stats.json", split_stats(split))
    stage.finish({"users": len(split.users)})
    return split


def split_stats(split: Split) -> dict[str, float | int | str]:
    """The dataset's statistics with the split's user and training-interaction counts."""
    return {**split.dataset.stats(), "split_users": len(split.users), "train_interactions": len(split.train)}
