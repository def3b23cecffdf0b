"""The run directory: atomic writes and stages that are skipped when their inputs are unchanged.

A run lives in `runs/<name>/`. Each stage writes its files into its own folder and, last, a
`_stage.json` marker holding the fingerprint of its inputs (the relevant config and the markers of
the stages it reads). A stage whose marker matches its current fingerprint is done; an interrupted
stage has no marker and runs again; every file is written to a temporary name and renamed, so no
reader ever sees half a file.

One process at a time writes a run: `run_lock` holds an exclusive lock on `runs/<name>/.lock`
(flock: the system releases it when its holder exits, even when killed), and a second writer gets
one message naming the holder, or waits for it when asked to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from recranker.errors import RecrankerError

log = logging.getLogger(__name__)

MARKER = "_stage.json"
#: written when a resumable stage starts, so a rerun with the same inputs can go on from its files
STARTED = "_started.json"


@contextlib.contextmanager
def atomic_write(path: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success rename it over `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside `path`; on success it replaces `path` (any earlier one is
    removed), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, value: Any) -> None:
    """Write `value` as indented JSON, atomically, keys in the order `value` has them (a summary
    reads back as it was written; fingerprints sort their keys themselves)."""
    with atomic_write(path) as fh:
        json.dump(value, fh, indent=2, default=_jsonable)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (configs, other fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=_jsonable).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "fingerprint_data"):  # a config section (renamed fields under their old names)
        return value.fingerprint_data()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


class Stage:
    """One stage's folder in a run directory.

    >>> stage = Stage(run_dir, "retrieval/lightgcn", inputs=fingerprint(cfg.retrieval, split_fp))
    >>> if not stage.done():
    ...     ...write files with atomic_write(stage.path / "x.npz")...
    ...     stage.finish({"seconds": 12.0})
    """

    def __init__(self, run_dir: str | Path, name: str, *, inputs: str) -> None:
        self.name = name
        self.path = Path(run_dir) / name
        self.inputs = inputs

    @property
    def marker(self) -> Path:
        """Path of the marker written when the stage finishes."""
        return self.path / MARKER

    def done(self) -> bool:
        """True when the stage finished with the same inputs."""
        if not self.marker.exists():
            return False
        return read_json(self.marker).get("inputs") == self.inputs

    def start(self) -> Path:
        """Invalidate any earlier result (the marker first, then every file of the folder, so no
        file of a run with other inputs survives) and create the folder; returns it."""
        if self.marker.exists():
            log.info("%s: its inputs changed since it last finished; running it again", self.name)
        self.marker.unlink(missing_ok=True)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def resume_or_start(self) -> bool:
        """Like `start`, except that a folder left by an unfinished run with the same inputs is kept
        (so that run can go on from its checkpoints); returns True when it was kept."""
        started = self.path / STARTED
        if not self.done() and started.exists() and read_json(started).get("inputs") == self.inputs:
            return True
        self.start()
        write_json(started, {"inputs": self.inputs, "started": time.time()})
        return False

    def finish(self, info: dict[str, Any] | None = None) -> None:
        """Mark the stage done with its inputs' fingerprint and `info`."""
        write_json(self.marker, {"inputs": self.inputs, "finished": time.time(), **(info or {})})

    def info(self) -> dict[str, Any]:
        """The marker's contents (empty when not done)."""
        return read_json(self.marker) if self.marker.exists() else {}


# ------------------------------------------------------------------------------ one writer a run
LOCK = ".lock"


class RunInUseError(RecrankerError):
    """Another process holds the lock of the run directory."""


_held: dict[Path, list[int]] = {}  # run dir -> [lock file descriptor, depth], this process's locks
_held_guard = threading.Lock()


@contextlib.contextmanager
def run_lock(run_dir: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the run directory's lock for the block (re-entrant within a process).

    Another process holding it is a `RunInUseError` naming that process, or, with `wait`, a wait
    until it is released. The system releases the lock when its holder exits in any way, so a
    killed run never blocks the next one. A run folder that this call created and that ends up
    holding nothing but the lock file is removed again (bad input leaves no empty run behind).
    """
    key = Path(run_dir).resolve()
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            entered = True
        else:
            entered = False
    if entered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    created = [p for p in (key, *key.parents) if not p.exists()]
    fd = _acquire(key, wait=wait)
    with _held_guard:
        _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _held_guard:
            del _held[key]
        try:
            if created and [p.name for p in key.iterdir()] == [LOCK]:
                (key / LOCK).unlink()
                for folder in created:  # innermost first; stops at the first that is not empty
                    folder.rmdir()
        except OSError:
            pass
        finally:
            os.close(fd)


def _acquire(run_dir: Path, *, wait: bool) -> int:
    """An open descriptor of `run_dir`/.lock holding its exclusive lock (stamped with this process)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, as before locking existed
        log.warning("%s: no file locking on this system; run one process per run directory", run_dir)
        return os.open(os.devnull, os.O_RDONLY)
    path = run_dir / LOCK
    announced = False
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not wait:
                    raise RunInUseError(
                        f"{run_dir}: in use by {holder}; wait for it to finish, or run again with --wait "
                        "to queue behind it") from None
                if not announced:
                    log.info("%s: waiting for %s to finish", run_dir, holder)
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if not path.exists() or os.stat(path).st_ino != os.fstat(fd).st_ino:
                os.close(fd)  # the holder removed an empty run folder: lock the new file instead
                continue
            stamp = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                     "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:200]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(stamp).encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _holder(fd: int) -> str:
    """Who holds the lock, from the stamp its holder wrote (best effort)."""
    try:
        stamp = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp["started"]))
        return f"process {stamp['pid']} on {stamp['host']} ({stamp['command']}, since {since})"
    except (ValueError, KeyError, TypeError, OSError):
        return "another process"
