"""Snapshots of an instance's disks, taken into this node's image cache.

Each snapshot is a blob (origin ``snapshot``) that the portal recorded on
this node. Consistency across all the disks of one snapshot request: a
running guest is paused (QEMU drains and flushes every disk when it stops
the vCPUs), each disk's qcow2 overlay is copied, which takes only as long as
copying what the guest has written, and the guest is resumed. Only then is
each copy turned into a standalone qcow2 (the overlay plus everything under
it), taken into the blob store (hashed), and linked into the image cache,
so new instances on this node use it as their base at once.

A marker file records that we paused the guest: an agent killed while it
was paused resumes it on the next pass instead of leaving it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from pathlib import Path

from cloudstate.model import Blob, BlobObserved, InstanceSpec
from nodeagent import failpoints, records
from nodeagent.events import EventLog
from nodeagent.hypervisor import Hypervisor
from nodeagent.images import qemuimg
from nodeagent.images.errors import ImageError
from nodeagent.images.sync import BlobSync

log = logging.getLogger(__name__)

PAUSED_MARKER = "snapshot-paused"


class SnapshotTaker:
    def __init__(self, *, hypervisor: Hypervisor, images: BlobSync,
                 events: EventLog | None = None):
        self._hv = hypervisor
        self._images = images
        self._events = events

    async def resume_if_we_paused(self, spec: InstanceSpec, directory: Path) -> None:
        """Undo a pause an interrupted snapshot left behind."""
        marker = directory / PAUSED_MARKER
        if not marker.exists():
            return
        state = await self._hv.state(spec.uuid)
        if state is not None and state.power_state == "paused":
            log.info("resuming %s, paused by a snapshot that was interrupted", spec.uuid)
            await self._hv.resume(spec.uuid)
        marker.unlink(missing_ok=True)

    async def take(self, spec: InstanceSpec, directory: Path, wanted: list[Blob]) -> None:
        """Take every snapshot in ``wanted`` (disks of ``spec``) at one instant."""
        sources: dict[str, Path] = {}
        for image in wanted:
            disk = next((d for d in spec.disks if d.device == image.device), None)
            try:
                path = records.contained(directory, f"{image.device}.qcow2")
            except records.BadRecord as exc:
                await self._fail(image, str(exc))
                continue
            if disk is None or disk.type != "disk" or not path.exists():
                await self._fail(image, f"instance {spec.name} has no disk {image.device} "
                                        "on this node")
                continue
            sources[image.uuid] = path
        todo = [image for image in wanted if image.uuid in sources]
        if not todo:
            return
        for image in todo:
            await self._images.report(image.uuid, BlobObserved(state="creating"))
        started = time.monotonic()
        copies = await self._copy_consistently(spec, directory, todo, sources)
        paused_for = time.monotonic() - started
        for image in todo:
            try:
                await self._finish(image, copies[image.uuid], started, paused_for)
            except ImageError as exc:
                await self._fail(image, exc.message)
            finally:
                copies[image.uuid].unlink(missing_ok=True)

    async def _copy_consistently(self, spec: InstanceSpec, directory: Path, todo: list[Blob],
                                 sources: dict[str, Path]) -> dict[str, Path]:
        state = await self._hv.state(spec.uuid)
        running = state is not None and state.power_state == "on"
        marker = directory / PAUSED_MARKER
        copies = {image.uuid: self._images.blobs.scratch_path(f"snapshot-{image.uuid}")
                  for image in todo}
        try:
            if running:
                marker.touch()
                await self._hv.suspend(spec.uuid)
            failpoints.hit("snapshot-paused")
            for image in todo:
                await asyncio.to_thread(_sparse_copy, sources[image.uuid], copies[image.uuid])
        except BaseException:
            for copy in copies.values():
                copy.unlink(missing_ok=True)
            raise
        finally:
            if running:
                with contextlib.suppress(Exception):
                    await self._hv.resume(spec.uuid)
                marker.unlink(missing_ok=True)
        return copies

    async def _finish(self, image: Blob, copy: Path, started: float, paused_for: float) -> None:
        standalone = self._images.blobs.scratch_path(f"snapshot-{image.uuid}-flat")
        try:
            try:
                await qemuimg.flatten(copy, standalone, lambda pct: self._progress(image, pct))
            except qemuimg.QemuImgFailed as exc:
                raise ImageError("converting the snapshot failed (the node's log says why)"
                                 ) from exc
            stored = await self._images.blobs.adopt(image.uuid, standalone)
        finally:
            standalone.unlink(missing_ok=True)
        # New instances on this node start from it without converting it again.
        await self._images.cache.ensure(stored)
        await self._images.adopt(image, stored, duration=time.monotonic() - started)
        if self._events:
            self._events.emit(
                "blob", image.uuid, f"snapshot of {image.device} taken ({stored.size} bytes)",
                duration=time.monotonic() - started,
                extra={"instance": image.instance_uuid, "paused_seconds": round(paused_for, 3)})
            if image.instance_uuid:
                self._events.emit(
                    "instance", image.instance_uuid,
                    f"snapshot of {image.device} taken as blob {image.uuid}",
                    duration=time.monotonic() - started,
                    extra={"blob": image.uuid, "paused_seconds": round(paused_for, 3)})

    async def _progress(self, image: Blob, percent: float) -> None:
        await self._images.report(image.uuid, BlobObserved(
            state="creating", done=int(percent * 100), total=10000))

    async def _fail(self, image: Blob, message: str) -> None:
        await self._images.report(image.uuid, BlobObserved(state="error", error=message))
        if self._events:
            self._events.emit("blob", image.uuid, f"snapshot failed: {message}")
            if image.instance_uuid:
                self._events.emit("instance", image.instance_uuid,
                                  f"snapshot of {image.device} failed: {message}")


def _sparse_copy(source: Path, dest: Path) -> None:
    """Copy a disk file, keeping its holes (a qcow2 overlay is mostly holes)."""
    result = subprocess.run(["cp", "--sparse=always", "--", str(source), str(dest)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageError(f"copying {source.name} failed: {result.stderr.strip()}")
