"""The checks of the asset cache: every file an asset provides recorded (size, sha256) at fetch and
checked when read, one fetch at a time, a complete folder put in place whole."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from recranker.errors import RecrankerError


class FetchError(RecrankerError):
    """An asset could not be obtained or failed its checksum."""


class DamagedAsset(FetchError):
    """A cached asset whose files differ from what was fetched (or that recorded no checksums)."""


#: folder -> the (file, size, mtime, inode) stamp of its files when last verified by this process
_VERIFIED: dict[Path, tuple] = {}


def verify_files(folder: Path, files: object, name: str) -> Path:
    """Check the files of `folder` against `files` ({relative path: {"size", "sha256"}}, recorded at
    fetch): `DamagedAsset` naming the first that differs and how to repair it. The hashes are
    computed once per process while the files' sizes, mtimes and inodes stay as they were."""
    repair = f"run `recranker fetch {name} --force`"
    if not isinstance(files, dict) or not files:
        raise DamagedAsset(f"{folder}: fetched by an older recranker, which recorded no checksums of its files; {repair}")
    stamp = []
    for rel in sorted(files):
        path = folder / rel
        if not path.is_file():
            raise DamagedAsset(f"{path}: missing from the cached {name}; {repair}")
        st = path.stat()
        stamp.append((rel, st.st_size, st.st_mtime_ns, st.st_ino))
    if _VERIFIED.get(folder) == tuple(stamp):
        return folder
    for rel, size, *_ in stamp:
        if size != files[rel]["size"]:
            raise DamagedAsset(f"{folder / rel}: {size} bytes, {files[rel]['size']} when fetched: the cached {name} is "
                               f"damaged; {repair}")
        if file_sha256(folder / rel) != files[rel]["sha256"]:
            raise DamagedAsset(f"{folder / rel}: its content differs from the fetched copy (sha256): the cached {name} "
                               f"is damaged or edited; {repair}")
    _VERIFIED[folder] = tuple(stamp)
    return folder


def file_records(folder: Path, marker: str) -> dict[str, dict[str, object]]:
    """{relative path: {"size", "sha256"}} of every file under `folder` but the marker."""
    return {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != marker}


@contextlib.contextmanager
def cache_lock(root: Path):
    """One fetch at a time in the cache `root` (an exclusive lock on the folder itself)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def install(tmp: Path, target: Path) -> None:
    """Put the complete folder `tmp` at `target`, moving an older copy aside first (a crash
    in between leaves no copy, never a mixed one; the next fetch removes what was moved aside)."""
    if target.exists():
        old = target.parent / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    _VERIFIED.pop(target, None)


def text_sha256(path: Path) -> str:
    """sha256 of a text file's bytes with CRLF line ends read as LF (copies differ only in those)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
