"""Uploads in progress on this node: bytes appended a chunk at a time until
they are sealed into a blob.

The portal forwards each chunk a client sends (Shaken Fist's client sends
up to 2 MiB at a time, a browser a few MiB) as it arrives; it is appended
here piece by piece, never held whole in memory, and made durable before
the new total is answered, so a client that lost the answer can ask the
size and carry on. A truncate undoes a chunk that went wrong. Sealing
moves the file into the blob store, hashing it on the way.

Layout under ``root``: one file per upload, named by its UUID. Files whose
upload no longer exists are swept (``sweep``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from nodeagent.images.blobs import BlobStore, StoredBlob, blob_uuid
from nodeagent.images.errors import ImageError
from nodeagent.images.files import CHUNK
from nodeagent.images.qemuimg import GiB


class UploadError(ImageError):
    """A request about an upload that can't be done; ``status`` for the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class UploadStore:
    def __init__(self, root: Path, *, max_bytes: int = 64 * GiB):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._locks: dict[str, asyncio.Lock] = {}

    def path(self, uuid: str) -> Path:
        return self.root / blob_uuid(uuid)

    def _lock(self, uuid: str) -> asyncio.Lock:
        return self._locks.setdefault(uuid, asyncio.Lock())

    def size(self, uuid: str) -> int:
        """Bytes received so far (none yet: 0)."""
        try:
            return self.path(uuid).stat().st_size
        except FileNotFoundError:
            return 0

    async def append(self, uuid: str, chunks: AsyncIterator[bytes]) -> int:
        """Append what ``chunks`` yields; return the upload's new size. One
        append at a time per upload, so two retries can't interleave."""
        path = self.path(uuid)
        async with self._lock(uuid):
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The agent's alone whatever the umask (cloudstate.privacy).
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "ab") as out:
                size = out.tell()
                pending: list[bytes] = []
                pending_bytes = 0
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise UploadError(f"an upload may be at most {self.max_bytes} bytes",
                                          status=413)
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if pending_bytes >= CHUNK:
                        await asyncio.to_thread(_write, out, pending)
                        pending, pending_bytes = [], 0
                await asyncio.to_thread(_write, out, pending)
                await asyncio.to_thread(os.fsync, out.fileno())
                return out.tell()

    async def truncate(self, uuid: str, offset: int) -> int:
        """Cut the upload back to ``offset`` bytes (which it must have)."""
        async with self._lock(uuid):
            size = self.size(uuid)
            if offset < 0 or offset > size:
                raise UploadError(f"the upload has {size} bytes; it can't be truncated "
                                  f"to {offset}")
            if self.path(uuid).exists():
                os.truncate(self.path(uuid), offset)
            return offset

    async def seal(self, uuid: str, blobs: BlobStore, into: str, *,
                   expected_sha512: str | None = None) -> StoredBlob:
        """Make the upload the blob ``into``; the upload is gone afterwards."""
        async with self._lock(uuid):
            path = self.path(uuid)
            if self.size(uuid) == 0:
                raise UploadError("the upload is empty: send its bytes first")
            # adopt() moves the file; on a refusal (a wrong checksum) it stays,
            # so the client can truncate and send again.
            return await blobs.adopt(into, path, expected_sha512=expected_sha512)

    def remove(self, uuid: str) -> None:
        self.path(uuid).unlink(missing_ok=True)
        self._locks.pop(uuid, None)

    def uuids(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*") if p.is_file())

    def sweep(self, wanted: set[str], *, grace: float) -> list[str]:
        """Remove uploads nobody wants (expired, converted, or never
        recorded) that have not been written to for ``grace`` seconds."""
        removed = []
        now = time.time()
        for uuid in self.uuids():
            if uuid in wanted or self._lock(uuid).locked():
                continue
            try:
                idle = now - self.path(uuid).stat().st_mtime
            except FileNotFoundError:
                continue
            if idle > grace:
                self.remove(uuid)
                removed.append(uuid)
        return removed


def _write(out, chunks: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    for chunk in chunks:
        out.write(chunk)
    out.flush()
