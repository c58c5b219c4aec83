"""The node's image cache: each image fetched once, checked, kept as qcow2.

``ensure`` is the one way in: a key already cached is returned at once; one
being fetched is shared with every caller asking for it; otherwise the
bytes are fetched into a private partial file (``fetch``), checked and made
a standalone qcow2 (``qemuimg``), and only then renamed into place with a
JSON sidecar. A failure at any step leaves nothing behind. ``adopt`` takes
in a qcow2 made on this node (a snapshot) the same way.

Layout under ``root``: ``<sha256(cache_key)>.qcow2`` and ``.json`` for each
image, ``.partial/`` for work in progress (emptied at start-up).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudstate.urlguard import FetchPolicy
from nodeagent.images import qemuimg, sandbox
from nodeagent.images.errors import ImageError
from nodeagent.images.fetch import Fetcher, FirstHop, Progress, ProgressCallback
from nodeagent.images.files import fsync_path, hash_file
from nodeagent.images.qemuimg import GiB
from nodeagent.images.sandbox import Sandbox

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CachedImage:
    """A ready image. ``size`` and ``sha256`` describe the bytes as fetched
    (what a publisher's checksum list refers to); ``path`` is the qcow2 made
    from them and ``virtual_size`` the guest-visible size in bytes."""

    path: Path
    format: str
    virtual_size: int
    size: int
    sha256: str


@dataclass
class _Download:
    task: asyncio.Task[CachedImage]
    listeners: list[ProgressCallback]


class ImageCache:
    def __init__(
        self,
        root: Path,
        policy: FetchPolicy,
        *,
        max_bytes: int = 64 * GiB,
        connect_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        min_rate: int = 1024,
        sandbox_user: str = "nobody",
    ):
        """``max_bytes`` bounds one image, both as fetched and as converted.
        A download that stalls for ``idle_timeout`` seconds, or averages less
        than ``min_rate`` bytes/s over such a window (a server dripping bytes
        to hold us forever), fails. qemu-img inspects and converts downloads
        as ``sandbox_user``."""
        self.root = Path(root)
        sandbox.check_user(sandbox_user)
        self.sandbox_user = sandbox_user
        self.policy = policy
        self.max_bytes = max_bytes
        self._fetcher = Fetcher(max_bytes=max_bytes, connect_timeout=connect_timeout,
                                idle_timeout=idle_timeout, min_rate=min_rate)
        self._partial = self.root / ".partial"
        self._inflight: dict[str, _Download] = {}

    # --- the cache itself ----------------------------------------------------

    def image_path(self, cache_key: str) -> Path:
        return self.root / f"{_digest(cache_key)}.qcow2"

    def _sidecar_path(self, cache_key: str) -> Path:
        return self.root / f"{_digest(cache_key)}.json"

    def lookup(self, cache_key: str) -> CachedImage | None:
        path = self.image_path(cache_key)
        try:
            meta = json.loads(self._sidecar_path(cache_key).read_text())
            if not path.is_file():
                return None
            return CachedImage(path=path, format="qcow2", virtual_size=int(meta["virtual_size"]),
                               size=int(meta["size"]), sha256=str(meta["sha256"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self, cache_key: str) -> None:
        """Forget an image. The caller must know no disk still uses it as a
        backing file. The sidecar goes first, so a crash in between leaves
        an orphan that cleanup_partials() removes, never a half entry."""
        self._sidecar_path(cache_key).unlink(missing_ok=True)
        self.image_path(cache_key).unlink(missing_ok=True)

    def cleanup_partials(self) -> None:
        """Remove what an interrupted run left behind. Call at start-up,
        before any ensure()."""
        if self._inflight:
            raise RuntimeError("cleanup_partials() while downloads are running")
        shutil.rmtree(self._partial, ignore_errors=True)
        self._partial.mkdir(parents=True, exist_ok=True)
        # An image is only complete with its sidecar; either alone is left
        # over from a crash between the two renames (or during remove()).
        for image in self.root.glob("*.qcow2"):
            if not image.with_suffix(".json").exists():
                image.unlink(missing_ok=True)
        for sidecar in self.root.glob("*.json"):
            if not sidecar.with_suffix(".qcow2").exists():
                sidecar.unlink(missing_ok=True)

    def scratch_path(self, label: str, suffix: str = ".qcow2") -> Path:
        """A private path for work in progress (a snapshot being made, say):
        removed by cleanup_partials() at the next start if left behind."""
        self._partial.mkdir(parents=True, exist_ok=True)
        return self._partial / f"{label}-{secrets.token_hex(4)}{suffix}"

    async def adopt(self, cache_key: str, ready: Path, *, url: str) -> CachedImage:
        """Take a standalone qcow2 made on this node (a snapshot) into the
        cache under ``cache_key``, as though it had been fetched from
        ``url``. ``ready`` is moved, and must be a scratch_path()."""
        info = await qemuimg.describe(ready.parent, ready.name, "qcow2")
        qemuimg.refuse_external_files(info)
        size, sha256 = await asyncio.to_thread(hash_file, ready)
        sidecar = ready.with_suffix(".json")
        meta = {"cache_key": cache_key, "url": url, "sha256": sha256, "size": size,
                "virtual_size": int(info["virtual-size"]), "format": "qcow2",
                "source_format": "qcow2", "fetched_at": time.time()}
        try:
            final = await self._install(cache_key, ready, sidecar, meta)
        finally:
            sidecar.unlink(missing_ok=True)
        return CachedImage(path=final, format="qcow2", virtual_size=int(info["virtual-size"]),
                           size=size, sha256=sha256)

    async def ensure(
        self,
        url: str,
        cache_key: str,
        *,
        expected_sha256: str | None = None,
        on_progress: ProgressCallback | None = None,
        policy: FetchPolicy | None = None,
        first_hop: FirstHop | None = None,
    ) -> CachedImage:
        """Return the cached image for ``cache_key``, fetching ``url`` if needed.

        Callers asking for a key that is already downloading share that
        download and its outcome. ``on_progress(done_bytes, total_bytes or
        None)`` is called at most once a second while bytes arrive, and once
        at the end. ``policy`` overrides the cache's own, e.g. to allow
        file:// for an image an operator registered. ``first_hop`` (headers,
        a TLS context) goes with the first request only, never to where it
        redirects (a grant for another node's agent, say).
        """
        expected = _check_sha256_arg(expected_sha256)
        download = self._inflight.get(cache_key)
        if download is None:
            cached = self.lookup(cache_key)
            if cached is not None:
                _check_expected(cached, expected, url)
                return cached
            listeners: list[ProgressCallback] = []
            task = asyncio.create_task(
                self._fetch(url, cache_key, expected, listeners, policy or self.policy,
                            first_hop or FirstHop()))
            download = _Download(task=task, listeners=listeners)
            self._inflight[cache_key] = download
            task.add_done_callback(lambda t: self._finished(cache_key, download))
        if on_progress is not None:
            download.listeners.append(on_progress)
        # Shielded so one caller giving up does not cancel the others' download.
        result = await asyncio.shield(download.task)
        _check_expected(result, expected, url)
        return result

    def _finished(self, cache_key: str, download: _Download) -> None:
        if self._inflight.get(cache_key) is download:
            del self._inflight[cache_key]
        # Mark the outcome as seen: if every caller gave up, nobody else will.
        if not download.task.cancelled():
            download.task.exception()

    async def close(self) -> None:
        """Cancel downloads in progress (agent shutdown); they clean up after
        themselves."""
        tasks = [d.task for d in self._inflight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, url: str, cache_key: str, expected: str | None,
                     listeners: list[ProgressCallback], policy: FetchPolicy,
                     first_hop: FirstHop) -> CachedImage:
        # The download, its conversion and its sidecar live in a sandbox
        # (qemu-img works there unprivileged) that goes when this ends.
        box = Sandbox(self._partial, _digest(cache_key)[:16], self.sandbox_user)
        try:
            with box:
                size, sha256 = await self._fetcher.fetch(
                    url, box.path(qemuimg.FETCHED), Progress(listeners), policy, first_hop)
                if expected is not None and sha256 != expected:
                    raise ImageError(f"the image at {url} has sha256 {sha256}, "
                                     f"not the expected {expected}")
                source_format, virtual_size, ready = await qemuimg.make_qcow2(
                    box, max_bytes=self.max_bytes)
                meta = {"cache_key": cache_key, "url": url, "sha256": sha256, "size": size,
                        "virtual_size": virtual_size, "format": "qcow2",
                        "source_format": source_format, "fetched_at": time.time()}
                final = await self._install(cache_key, ready, box.path("sidecar.json"), meta)
        except OSError as exc:
            raise ImageError(f"the node could not store the image from {url}: "
                             f"{exc.strerror or exc}") from exc
        log.info("cached %s as %s (%s, %d bytes)", url, final.name, source_format, size)
        return CachedImage(path=final, format="qcow2", virtual_size=virtual_size,
                           size=size, sha256=sha256)

    async def _install(self, cache_key: str, ready: Path, sidecar: Path,
                       meta: dict[str, Any]) -> Path:
        """Rename a checked qcow2 and its sidecar into place, durably: image
        first, so a crash in between leaves an image without its sidecar,
        which cleanup_partials() removes."""
        sidecar.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        for path in (sidecar, ready):
            await asyncio.to_thread(fsync_path, path)
            # The agent's alone: libvirt lends an image to QEMU while a guest
            # on it runs (dynamic ownership), and no local user reads it.
            path.chmod(0o600)
        final = self.image_path(cache_key)
        os.replace(ready, final)
        os.replace(sidecar, self._sidecar_path(cache_key))
        await asyncio.to_thread(fsync_path, self.root)
        return final


def _digest(cache_key: str) -> str:
    return hashlib.sha256(cache_key.encode()).hexdigest()


def _check_sha256_arg(value: str | None) -> str | None:
    if value is None:
        return None
    normalised = value.strip().lower()
    if not _SHA256.fullmatch(normalised):
        raise ImageError(f"{value!r} is not a sha256 checksum (64 hexadecimal digits)")
    return normalised


def _check_expected(image: CachedImage, expected: str | None, url: str) -> None:
    if expected is not None and image.sha256 != expected:
        raise ImageError(f"the image at {url} has sha256 {image.sha256}, not the "
                         f"expected {expected} (the cached copy must be removed "
                         "before another can be fetched)")

