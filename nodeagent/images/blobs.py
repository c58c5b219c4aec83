"""The blobs this node holds: fixed bytes, each kept exactly as it came.

A blob arrives one of three ways: fetched from a URL (or copied from
another node's agent, which is also a fetch), or adopted from a file made
on this node (a snapshot, a finished upload). Either way it is written
into a sandbox (``sandbox``) under a private name, hashed (sha512, the
checksum Shaken Fist knows blobs by), checked against the checksum
expected when one is, inspected for the blob's view (its format read from
its header in Python, then described by qemu-img told that format, as an
unprivileged user: ``qemuimg.inspect``), and only then renamed into place
with a JSON sidecar. A failure at any step leaves nothing behind. Nothing
here decides whether the bytes make a disk: that is ``cache``'s job, when
an instance first starts from them.

Layout under ``root`` (the agent's alone): ``<uuid>`` and ``<uuid>.json``
for each blob, ``.partial/`` for work in progress (emptied at start-up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudstate.urlguard import FetchPolicy
from nodeagent.images import qemuimg, sandbox
from nodeagent.images.errors import ImageError
from nodeagent.images.fetch import Fetched, Fetcher, FirstHop, Progress
from nodeagent.images.files import fsync_path, hash_file
from nodeagent.images.inflight import ProgressCallback, Shared
from nodeagent.images.qemuimg import FETCHED, GiB
from nodeagent.images.sandbox import Sandbox

log = logging.getLogger(__name__)

_SHA512 = re.compile(r"[0-9a-f]{128}")


@dataclass(frozen=True)
class StoredBlob:
    """A whole blob on this node, and what is known of its bytes."""

    uuid: str
    path: Path
    size: int
    sha512: str
    format: str | None = None
    virtual_size: int | None = None
    modified: float | None = None


def blob_uuid(value: str) -> str:
    """``value`` as a canonical UUID (it becomes a file name), else ImageError."""
    try:
        return str(uuidlib.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise ImageError(f"{value!r} is not a blob UUID") from None


def check_sha512(value: str | None) -> str | None:
    if value is None:
        return None
    normalised = value.strip().lower()
    if not _SHA512.fullmatch(normalised):
        raise ImageError(f"{value!r} is not a sha512 checksum (128 hexadecimal digits)")
    return normalised


class BlobStore:
    def __init__(self, root: Path, policy: FetchPolicy, *, max_bytes: int = 64 * GiB,
                 connect_timeout: float = 10.0, idle_timeout: float = 60.0,
                 min_rate: int = 1024, sandbox_user: str = "nobody",
                 file_dirs: tuple[Path, ...] = ()):
        """``max_bytes`` bounds one blob. A download that stalls for
        ``idle_timeout`` seconds, or averages less than ``min_rate`` bytes/s
        over such a window (a server dripping bytes to hold us forever), fails.
        qemu-img inspects what arrives as ``sandbox_user``. A file:// blob is
        read only from inside one of ``file_dirs``."""
        self.root = Path(root)
        self.policy = policy
        sandbox.check_user(sandbox_user)
        self.sandbox_user = sandbox_user
        self.max_bytes = max_bytes
        self._fetcher = Fetcher(max_bytes=max_bytes, connect_timeout=connect_timeout,
                                idle_timeout=idle_timeout, min_rate=min_rate,
                                file_dirs=file_dirs)
        self._partial = self.root / ".partial"
        self._fetches: Shared[StoredBlob] = Shared()

    # --- what is here ---------------------------------------------------------------

    def path(self, uuid: str) -> Path:
        return self.root / blob_uuid(uuid)

    def _sidecar(self, uuid: str) -> Path:
        return self.root / f"{blob_uuid(uuid)}.json"

    def lookup(self, uuid: str) -> StoredBlob | None:
        try:
            path = self.path(uuid)
            meta = json.loads(self._sidecar(uuid).read_text())
            if not path.is_file():
                return None
            return StoredBlob(uuid=path.name, path=path, size=int(meta["size"]),
                              sha512=str(meta["sha512"]), format=meta.get("format"),
                              virtual_size=meta.get("virtual_size"),
                              modified=meta.get("modified"))
        except (OSError, ValueError, KeyError, TypeError, ImageError):
            return None

    def uuids(self) -> list[str]:
        """Every whole blob held here."""
        found = []
        for sidecar in self.root.glob("*.json"):
            if (self.root / sidecar.stem).is_file():
                found.append(sidecar.stem)
        return sorted(found)

    def age(self, uuid: str) -> float:
        """Seconds since the blob was put here."""
        try:
            return time.time() - self._sidecar(uuid).stat().st_mtime
        except OSError:
            return 0.0

    def remove(self, uuid: str) -> None:
        """Forget a blob. The sidecar goes first, so a crash in between
        leaves an orphan that cleanup_partials() removes, never a half entry."""
        self._sidecar(uuid).unlink(missing_ok=True)
        self.path(uuid).unlink(missing_ok=True)

    def cleanup_partials(self) -> None:
        """Remove what an interrupted run left behind. Call at start-up."""
        if self._fetches:
            raise RuntimeError("cleanup_partials() while fetches are running")
        shutil.rmtree(self._partial, ignore_errors=True)
        self._partial.mkdir(parents=True, exist_ok=True)
        for entry in self.root.iterdir():
            if entry.name.startswith("."):
                continue
            pair = entry.with_suffix("") if entry.suffix == ".json" else \
                entry.with_name(entry.name + ".json")
            if not pair.exists():
                entry.unlink(missing_ok=True)

    def scratch_path(self, label: str) -> Path:
        """A private path for work in progress: removed by cleanup_partials()
        at the next start if left behind."""
        self._partial.mkdir(parents=True, exist_ok=True)
        return self._partial / f"{label}-{secrets.token_hex(4)}"

    # --- getting one ------------------------------------------------------------------

    async def fetch(self, uuid: str, url: str, *, policy: FetchPolicy | None = None,
                    first_hop: FirstHop | None = None,
                    expected_sha512: str | None = None,
                    unchanged: tuple[int | None, float | None] | None = None,
                    on_progress: ProgressCallback | None = None) -> StoredBlob:
        """The blob ``uuid``, fetched from ``url`` unless it is here already.
        Callers asking for a blob being fetched share that fetch.
        ``first_hop`` (headers, a TLS context) goes with the first request
        only, never where it redirects (a grant for another node's agent and
        this node's certificate, say). ``unchanged``: see Fetcher.fetch."""
        uuid = blob_uuid(uuid)
        expected = check_sha512(expected_sha512)
        if uuid not in self._fetches and (held := self.lookup(uuid)) is not None:
            return _checked(held, expected, url)

        async def start(listeners: list[ProgressCallback]) -> StoredBlob:
            return await self._fetch(uuid, url, expected, listeners, policy or self.policy,
                                     first_hop or FirstHop(), unchanged)

        return _checked(await self._fetches.run(uuid, start, on_progress), expected, url)

    async def _fetch(self, uuid: str, url: str, expected: str | None,
                     listeners: list[ProgressCallback], policy: FetchPolicy,
                     first_hop: FirstHop,
                     unchanged: tuple[int | None, float | None] | None) -> StoredBlob:
        try:
            with self._sandbox(uuid) as box:
                fetched = await self._fetcher.fetch(url, box.path(FETCHED), Progress(listeners),
                                                    policy, first_hop, unchanged)
                if expected is not None and fetched.sha512 != expected:
                    raise ImageError(f"what {url} sent has sha512 {fetched.sha512}, not the "
                                     f"expected {expected}")
                stored = await self._install(uuid, box, fetched)
        except OSError as exc:
            raise ImageError(f"the node could not store what {url} sent: "
                             f"{exc.strerror or exc}") from exc
        log.info("fetched blob %s from %s (%d bytes)", uuid, url, fetched.size)
        return stored

    async def adopt(self, uuid: str, ready: Path, *,
                    expected_sha512: str | None = None) -> StoredBlob:
        """Take in a file made on this node (a snapshot, a finished upload)
        as the blob ``uuid``. ``ready`` is moved (or left alone, if refused)."""
        uuid = blob_uuid(uuid)
        expected = check_sha512(expected_sha512)
        size, sha512 = await asyncio.to_thread(hash_file, ready)
        if expected is not None and sha512 != expected:
            raise ImageError(f"the bytes have sha512 {sha512}, not the expected {expected}")
        with self._sandbox(uuid) as box:
            os.replace(ready, box.path(FETCHED))
            return await self._install(uuid, box, Fetched(size=size, sha512=sha512))

    def _sandbox(self, uuid: str) -> Sandbox:
        return Sandbox(self._partial, uuid, self.sandbox_user)

    async def _install(self, uuid: str, box: Sandbox, fetched: Fetched) -> StoredBlob:
        """Inspect the box's FETCHED, then rename it and its sidecar into
        place, durably: bytes first, so a crash in between leaves bytes
        without a sidecar, which cleanup_partials() removes."""
        found = await qemuimg.inspect(box, FETCHED)
        if found.refusal is not None:
            log.info("blob %s is no usable disk image: %s", uuid, found.refusal)
        meta: dict[str, Any] = {
            "uuid": uuid, "size": fetched.size, "sha512": fetched.sha512,
            "modified": fetched.modified, "stored_at": time.time(),
            "format": found.format, "virtual_size": found.virtual_size}
        ready, sidecar = box.path(FETCHED), box.path("sidecar.json")
        sidecar.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        for path in (sidecar, ready):
            await asyncio.to_thread(fsync_path, path)
            path.chmod(0o600)  # the agent's alone (cloudstate.privacy)
        final = self.path(uuid)
        os.replace(ready, final)
        os.replace(sidecar, self._sidecar(uuid))
        await asyncio.to_thread(fsync_path, self.root)
        return StoredBlob(uuid=uuid, path=final, size=fetched.size, sha512=fetched.sha512,
                          format=found.format, virtual_size=found.virtual_size,
                          modified=fetched.modified)

    async def close(self) -> None:
        await self._fetches.close()


def _checked(stored: StoredBlob, expected: str | None, url: str) -> StoredBlob:
    if expected is not None and stored.sha512 != expected:
        raise ImageError(f"the blob from {url} has sha512 {stored.sha512}, not the "
                         f"expected {expected}")
    return stored
