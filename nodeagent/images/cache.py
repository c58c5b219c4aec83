"""The disks guests start from: one standalone qcow2 per blob, made once.

A blob is any bytes; before an instance's disk is made on it, ``ensure``
checks they are a usable disk image and makes them a standalone qcow2
(Shaken Fist's "transcode"): the blob is lent (hard-linked, read-only) to a
sandbox, its format is read from its header in Python (``formats``: no
backing or external files, a known format), and only then does qemu-img,
told that format and run as an unprivileged user, describe and convert it
(``qemuimg``, ``sandbox``). That is when a file that is no disk image is
refused, with a generic message the instance's owner reads. A blob that is
a qcow2 already is hard-linked, not copied: both are immutable. Callers
asking for the same blob at once share one conversion.

Layout under ``root``: ``<blob uuid>.qcow2`` and ``.json`` for each,
``.partial/`` for work in progress (emptied at start-up). Images are the
agent's (0600); libvirt lends one to QEMU while a guest on it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from nodeagent.images import qemuimg, sandbox
from nodeagent.images.blobs import StoredBlob, blob_uuid
from nodeagent.images.errors import ImageError
from nodeagent.images.files import fsync_path
from nodeagent.images.inflight import Shared
from nodeagent.images.qemuimg import GiB
from nodeagent.images.sandbox import Sandbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedImage:
    """A ready qcow2 made from a blob; ``virtual_size`` is the guest-visible
    size in bytes, ``source_format`` what the blob was."""

    path: Path
    virtual_size: int
    source_format: str
    format: str = "qcow2"


class ImageCache:
    def __init__(self, root: Path, *, max_bytes: int = 64 * GiB,
                 sandbox_user: str = "nobody"):
        """``max_bytes`` bounds one image once converted; qemu-img inspects
        and converts blobs as ``sandbox_user``."""
        self.root = Path(root)
        self.max_bytes = max_bytes
        sandbox.check_user(sandbox_user)
        self.sandbox_user = sandbox_user
        self._partial = self.root / ".partial"
        self._conversions: Shared[CachedImage] = Shared()

    def image_path(self, uuid: str) -> Path:
        return self.root / f"{blob_uuid(uuid)}.qcow2"

    def _sidecar(self, uuid: str) -> Path:
        return self.root / f"{blob_uuid(uuid)}.json"

    def lookup(self, uuid: str) -> CachedImage | None:
        try:
            path = self.image_path(uuid)
            meta = json.loads(self._sidecar(uuid).read_text())
            if not path.is_file():
                return None
            return CachedImage(path=path, virtual_size=int(meta["virtual_size"]),
                               source_format=str(meta["source_format"]))
        except (OSError, ValueError, KeyError, TypeError, ImageError):
            return None

    def uuids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.qcow2")
                      if p.with_suffix(".json").exists())

    def remove(self, uuid: str) -> None:
        """Forget an image. The caller must know no disk still uses it as a
        backing file. The sidecar goes first, so a crash in between leaves
        an orphan that cleanup_partials() removes, never a half entry."""
        self._sidecar(uuid).unlink(missing_ok=True)
        self.image_path(uuid).unlink(missing_ok=True)

    def cleanup_partials(self) -> None:
        """Remove what an interrupted run left behind. Call at start-up."""
        if self._conversions:
            raise RuntimeError("cleanup_partials() while conversions are running")
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

    async def ensure(self, blob: StoredBlob) -> CachedImage:
        """The qcow2 made from ``blob``, made now if need be (ImageError
        saying why the bytes are no usable disk)."""
        if blob.uuid not in self._conversions and (ready := self.lookup(blob.uuid)):
            return ready

        async def start(_listeners: list) -> CachedImage:  # type: ignore[type-arg]
            return await self._convert(blob)

        return await self._conversions.run(blob.uuid, start)

    async def _convert(self, blob: StoredBlob) -> CachedImage:
        with Sandbox(self._partial, blob.uuid, self.sandbox_user) as box:
            try:
                _lend(blob.path, box.path(qemuimg.FETCHED))
                source_format, virtual_size, ready = await qemuimg.make_qcow2(
                    box, max_bytes=self.max_bytes)
                image = CachedImage(path=self.image_path(blob.uuid),
                                    virtual_size=virtual_size, source_format=source_format)
                sidecar = box.path("sidecar.json")
                sidecar.write_text(json.dumps({
                    "blob": blob.uuid, "virtual_size": virtual_size, "format": "qcow2",
                    "source_format": source_format, "made_at": time.time()}, indent=1) + "\n")
                for path in (sidecar, ready):
                    await asyncio.to_thread(fsync_path, path)
                # Image first: a crash in between leaves an image without its
                # sidecar, which cleanup_partials() removes. A qcow2 blob's image
                # is the blob's own (immutable) bytes, linked.
                os.replace(ready, image.path)
                os.replace(sidecar, self._sidecar(blob.uuid))
                await asyncio.to_thread(fsync_path, self.root)
            except OSError as exc:
                raise ImageError(f"the node could not store the disk image: "
                                 f"{exc.strerror or exc}") from exc
        log.info("blob %s made a %s disk image (%s)", blob.uuid, source_format, image.path.name)
        return image

    async def close(self) -> None:
        await self._conversions.close()


def _lend(blob: Path, dest: Path) -> None:
    """The blob's bytes at ``dest``: the same file, hard-linked (the sandbox
    reads it, never changes it), or a copy where a link can't be made."""
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)
