"""Durable files for the image code: hashing what is written, and fsync.

An image or disk is renamed into place only once its bytes and its name
are on disk, so a crash leaves either nothing or the whole file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20


def write_hashed(out: BinaryIO, hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)
        out.write(chunk)


def new_hasher() -> Any:
    """The checksum blobs are known by: sha512, as Shaken Fist's."""
    return hashlib.sha512()


def hash_file(path: Path) -> tuple[int, str]:
    """(size, sha512) of a file."""
    hasher = new_hasher()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            hasher.update(chunk)
    return size, hasher.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (which makes the names in it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
