"""Which agent grants were used, until they expire, surviving a restart.

A grant is accepted once. Kept only in memory, that would let a grant
captured in the seconds before an agent restarts be used again right after
it. So each id goes to a small file (appended, one line per grant: expiry
and id) before its request is served; a starting agent reads back the ones
not yet expired. The file is rewritten without the expired ones when it
grows, and the number of live ids is bounded: past that, grants are refused
(never accepted without being remembered) until some expire.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

MAX_LIVE = 8192  # grants live seconds; this many at once is a flood


class ReplaysFull(Exception):
    """Too many live grants to remember another one."""


class ReplayGuard:
    def __init__(self, path: Path | None = None, *, max_live: int = MAX_LIVE):
        self._path = path
        self._max_live = max_live
        self._seen: dict[str, float] = {}
        self._lines = 0  # in the file, live or not
        self._tidy_at = 1024
        if path is not None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._seen = _load(path)
            self._rewrite()

    def first_use(self, jti: str, expires: float) -> bool:
        """True the first time ``jti`` is seen (it is then remembered until
        ``expires``), False after. Raises ReplaysFull rather than accept a
        grant it could not remember."""
        if jti in self._seen and self._seen[jti] >= time.time():
            return False
        if len(self._seen) >= self._max_live:
            self._forget_expired()
            if len(self._seen) >= self._max_live:
                raise ReplaysFull()
        self._seen[jti] = expires
        if self._path is not None:
            with open(self._path, "a") as out:
                out.write(f"{expires:.3f} {jti}\n")
            self._lines += 1
        if len(self._seen) + self._lines >= self._tidy_at:
            self._forget_expired()
        return True

    def _forget_expired(self) -> None:
        now = time.time()
        self._seen = {jti: exp for jti, exp in self._seen.items() if exp >= now}
        self._rewrite()
        # Next time once as many again have come, or at least a thousand.
        self._tidy_at = 4 * len(self._seen) + 1024

    def _rewrite(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{exp:.3f} {jti}\n" for jti, exp in self._seen.items())
        os.replace(tmp, self._path)
        self._lines = len(self._seen)


def _load(path: Path) -> dict[str, float]:
    """The unexpired ids of the file; a damaged line is skipped."""
    now = time.time()
    seen: dict[str, float] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return seen
    for line in text.splitlines():
        expires, _, jti = line.partition(" ")
        try:
            when = float(expires)
        except ValueError:
            continue
        if jti and when >= now:
            seen[jti] = when
    log.info("remembering %d agent grants used before this start", len(seen))
    return seen
