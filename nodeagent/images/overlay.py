"""Guest disks: a qcow2 overlay on a cached image, or a blank qcow2.

An instance's disk never changes the image under it: each guest writes to
its own overlay, and many guests on this node share one cached base.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from nodeagent.images import qemuimg
from nodeagent.images.cache import CachedImage
from nodeagent.images.errors import ImageError
from nodeagent.images.files import fsync_path
from nodeagent.images.qemuimg import GiB


async def create_overlay(base: CachedImage | None, dest: Path, size_gb: int) -> None:
    """Create a guest disk of ``size_gb`` GiB at ``dest``: a qcow2 overlay on
    ``base``, or a blank qcow2 when base is None.

    The disk is made under a temporary name and linked into place, so
    ``dest`` is either absent or complete. An existing ``dest`` is never
    replaced (it holds a guest's data): FileExistsError.
    """
    if size_gb < 1:
        raise ImageError(f"a disk must be at least 1 GB, not {size_gb} GB")
    size = size_gb * GiB
    if base is not None and size < base.virtual_size:
        needed = -(-base.virtual_size // GiB)
        raise ImageError(f"a {size_gb} GB disk is too small for its image, which is "
                         f"{needed} GB ({base.virtual_size} bytes); ask for at least "
                         f"{needed} GB")
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    args = ["create", "-q", "-f", "qcow2"]
    if base is not None:
        # Absolute, so the overlay works whatever directory QEMU starts in.
        args += ["-b", str(base.path.resolve()), "-F", "qcow2"]
    args += [str(tmp), str(size)]
    try:
        try:
            await qemuimg.run(args)
        except qemuimg.QemuImgFailed as exc:
            raise ImageError("creating the disk failed (the node's log says why)") from exc
        await asyncio.to_thread(fsync_path, tmp)
        os.link(tmp, dest)  # unlike rename, refuses to replace an existing disk
        await asyncio.to_thread(fsync_path, dest.parent)
    finally:
        tmp.unlink(missing_ok=True)

