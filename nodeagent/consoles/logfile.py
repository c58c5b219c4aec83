"""An instance's serial console log: its tail, and clearing it.

virtlogd writes the log (the domain's ``<log file=... append='on'>``) and
rotates it at its size limit into ``console.log.0``, ``.1``, ...; the tail
reads across the rotated files so a fresh rotation loses nothing. virtlogd
keeps the file open in append mode, so truncating it in place is safe: its
next write lands at the new end.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_BACKUPS = 9  # virtlogd keeps 3 by default; look a little further


def _generations(path: Path) -> list[Path]:
    """The log and its rotated copies, newest first."""
    found = [path]
    for index in range(MAX_BACKUPS):
        backup = path.with_name(f"{path.name}.{index}")
        if not backup.exists():
            break
        found.append(backup)
    return found


def tail(path: Path, length: int | None) -> bytes:
    """The last ``length`` bytes written to the log (fewer if it holds less);
    None: all of it, rotated copies included."""
    if length is not None and length <= 0:
        return b""
    pieces: list[bytes] = []
    wanted = length if length is not None else sum(
        generation.stat().st_size for generation in _generations(path) if generation.exists())
    for generation in _generations(path):
        try:
            with open(generation, "rb") as source:
                size = os.fstat(source.fileno()).st_size
                take = min(size, wanted)
                source.seek(size - take)
                pieces.append(source.read(take))
        except FileNotFoundError:
            continue
        wanted -= len(pieces[-1])
        if wanted <= 0:
            break
    return b"".join(reversed(pieces))


def clear(path: Path) -> None:
    """Empty the log and drop its rotated copies."""
    for generation in _generations(path)[1:]:
        generation.unlink(missing_ok=True)
    try:
        os.truncate(path, 0)
    except FileNotFoundError:
        pass


def from_line_start(data: bytes) -> bytes:
    """Drop a partial first line, so replayed scrollback starts cleanly (an
    escape sequence cut in half would otherwise print as garbage)."""
    newline = data.find(b"\n")
    if 0 <= newline < len(data) - 1 and newline < 4096:
        return data[newline + 1:]
    return data
