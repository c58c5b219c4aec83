"""Usage history on the node's disk: one file of fixed size per object.

A file holds a few series (the object's metrics) at every resolution of
``cloudstate.usage.TIERS``. Each tier is a ring of slots; a slot is the
period [start, start + step) and holds its start, how many samples fell in
it and the mean of each metric over them. A sample goes into the slot of its
time in every tier, so coarser tiers are consolidated as samples arrive and
nothing is ever recomputed. A slot whose start is not the one its position
stands for now is old (a lap behind, or never written): it reads as a gap.

The file is mapped into memory and written in place, so a sample costs a few
stores into memory; the kernel writes the pages back, and an agent killed at
any moment finds its history where it left it. Its size never changes:
``file_size`` bytes per object, whatever the uptime.
"""

from __future__ import annotations

import logging
import math
import mmap
import os
import struct
import uuid as uuidlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from cloudstate import privacy
from cloudstate.usage import TIERS, Tier

log = logging.getLogger(__name__)

MAGIC = b"SFUSAGE1"
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sI")  # magic, number of metrics; then (step, slots) per tier
_TIER = struct.Struct("<II")
NODE_KEY = "node"
SUFFIX = ".usage"
NAN = float("nan")


def file_size(metrics: int, tiers: Sequence[Tier] = TIERS) -> int:
    return HEADER_SIZE + sum(tier.slots for tier in tiers) * (2 + metrics) * 8


def _header(metrics: int, tiers: Sequence[Tier]) -> bytes:
    raw = _HEADER.pack(MAGIC, metrics) + b"".join(_TIER.pack(t.step, t.slots) for t in tiers)
    if len(raw) > HEADER_SIZE:
        raise ValueError("too many tiers for the header")
    return raw.ljust(HEADER_SIZE, b"\0")


class History:
    """One object's series, mapped from its file (made, or remade when its
    layout is not this version's)."""

    def __init__(self, path: Path, metrics: Sequence[str], tiers: Sequence[Tier] = TIERS):
        self.path = path
        self.metrics = tuple(metrics)
        self.tiers = tuple(tiers)
        self._width = 2 + len(self.metrics)  # start, count, one mean per metric
        self._bases = []
        offset = 0
        for tier in self.tiers:
            self._bases.append(offset)
            offset += tier.slots * self._width
        size = file_size(len(self.metrics), self.tiers)
        header = _header(len(self.metrics), self.tiers)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # What guests did is the agent's alone, even in a file an older
            # version made readable.
            os.fchmod(fd, 0o600)
            if os.fstat(fd).st_size != size or os.pread(fd, HEADER_SIZE, 0) != header:
                if os.fstat(fd).st_size:
                    log.warning("usage history %s has another layout; starting it afresh", path)
                os.ftruncate(fd, 0)
                # Every block allocated now: a full disk refuses the file here, rather
                # than killing the agent (SIGBUS) on its first store into a hole.
                os.posix_fallocate(fd, 0, size)
                os.pwrite(fd, header, 0)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._values = memoryview(self._map)[HEADER_SIZE:].cast("d")

    def close(self) -> None:
        self._values.release()
        self._map.close()

    def _slot(self, tier_index: int, start: int) -> int:
        tier = self.tiers[tier_index]
        return self._bases[tier_index] + (start // tier.step) % tier.slots * self._width

    def record(self, when: float, values: Mapping[str, float | None], covers: float = 0.0) -> None:
        """Add a sample taken at ``when``. ``covers``: the seconds before it
        that it stands for (its rates' period), so a sample taken less often
        than the finest step fills each of that tier's slots it spans."""
        row = [NAN if (v := values.get(name)) is None else float(v) for name in self.metrics]
        for index, tier in enumerate(self.tiers):
            last = int(when // tier.step) * tier.step
            first = last
            if index == 0 and covers > tier.step:
                first = max(int((when - covers) // tier.step + 1) * tier.step, last - tier.span)
            for start in range(first, last + 1, tier.step):
                self._add(index, start, row)

    def _add(self, tier_index: int, start: int, row: list[float]) -> None:
        at = self._slot(tier_index, start)
        data = self._values
        if data[at] != start:  # a new period: forget the lap before
            data[at] = start
            data[at + 1] = 0
            for i in range(len(row)):
                data[at + 2 + i] = NAN
        count = data[at + 1]
        for i, value in enumerate(row):
            if math.isnan(value):
                continue
            old = data[at + 2 + i]
            data[at + 2 + i] = value if math.isnan(old) else old + (value - old) / (count + 1)
        data[at + 1] = count + 1

    def series(self, tier: Tier, now: float) -> tuple[list[int], dict[str, list[float | None]]]:
        """The tier's slots up to the one holding ``now``, oldest first: their
        starts and each metric's means (None where nothing was sampled)."""
        index = self.tiers.index(tier)
        data = self._values
        current = int(now // tier.step) * tier.step
        times: list[int] = []
        columns: list[list[float | None]] = [[] for _ in self.metrics]
        for start in range(current - (tier.slots - 1) * tier.step, current + 1, tier.step):
            at = self._slot(index, start)
            times.append(start)
            stored = data[at] == start
            for i, column in enumerate(columns):
                value = data[at + 2 + i] if stored else NAN
                column.append(None if math.isnan(value) else value)
        return times, dict(zip(self.metrics, columns, strict=True))


class HistoryStore:
    """The directory of a node's history files: ``node.usage`` for the node,
    ``<uuid>.usage`` for each guest it holds; the directory is 0700 and the
    files 0600 (``cloudstate.privacy``)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._open: dict[str, History] = {}

    def get(self, key: str, metrics: Sequence[str]) -> History:
        history = self._open.get(key)
        if history is None:
            privacy.private_dir(self.directory)
            history = self._open[key] = History(self._path(key), metrics)
        return history

    def find(self, key: str, metrics: Sequence[str]) -> History | None:
        """An object's history if it has one (never makes a file)."""
        if key in self._open or self._path(key).exists():
            return self.get(key, metrics)
        return None

    def keys(self) -> Iterator[str]:
        """Every object with a history file (others in the directory are not ours)."""
        if self.directory.exists():
            for path in self.directory.glob(f"*{SUFFIX}"):
                key = path.name.removesuffix(SUFFIX)
                if key == NODE_KEY or _is_uuid(key):
                    yield key

    def forget(self, key: str) -> None:
        history = self._open.pop(key, None)
        if history is not None:
            history.close()
        self._path(key).unlink(missing_ok=True)

    def close(self) -> None:
        for history in self._open.values():
            history.close()
        self._open.clear()

    def _path(self, key: str) -> Path:
        # The key becomes a file name: nothing but "node" or a uuid.
        if key != NODE_KEY:
            key = str(uuidlib.UUID(key))
        return self.directory / f"{key}{SUFFIX}"


def _is_uuid(text: str) -> bool:
    try:
        return str(uuidlib.UUID(text)) == text
    except ValueError:
        return False
