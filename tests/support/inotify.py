"""Watching a directory for any process opening its files (Linux inotify,
through ctypes): proof that a file was not opened, without strace."""

from __future__ import annotations

import ctypes
import os
import select
import struct
from pathlib import Path
from types import TracebackType

IN_ACCESS = 0x001
IN_OPEN = 0x020
_EVENT = struct.Struct("iIII")
_libc = ctypes.CDLL(None, use_errno=True)


class OpenWatch:
    """``with OpenWatch(directory) as watch: ...; watch.opened()`` lists the
    names of the directory's files something opened or read meanwhile."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._fd = -1

    def __enter__(self) -> OpenWatch:
        self._fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self._fd, str(self.directory).encode(),
                                   IN_OPEN | IN_ACCESS) < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {self.directory}")
        return self

    def opened(self) -> list[str]:
        names = []
        while select.select([self._fd], [], [], 0.2)[0]:
            data = os.read(self._fd, 65536)
            offset = 0
            while offset < len(data):
                _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                names.append(data[offset:offset + length].rstrip(b"\0").decode() or ".")
                offset += length
        return names

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        os.close(self._fd)
