"""Every qemu-img run of the agent, and what it will accept from one.

A fetched file is hostile until proven otherwise. Its format is decided
from its header in Python, and whatever would make QEMU open other files on
this host (backing files, external data files, VMDK descriptors and
parents) is refused there (``formats``), before qemu-img sees it. qemu-img
is then always told the format (``-f``) and opens images without taking
locks (``-U``); on untrusted bytes it runs as an unprivileged user in a
directory of its own (``sandbox``), under hard limits (parsing a crafted
file can be made to eat memory and CPU: OpenStack's CVE-2015-5162). What
it reports is checked again, raw data must look like a disk, and the rest
is converted to a standalone qcow2 under a file size limit.

Users read generic reasons: qemu-img's own messages name files on this
host, so they go to the agent's log only. The same runner makes guest
disks (``overlay``) and flattens snapshots, so no qemu-img is ever left
running when its caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodeagent import failpoints
from nodeagent.images import formats
from nodeagent.images.errors import ImageError
from nodeagent.images.files import fsync_path
from nodeagent.images.sandbox import Sandbox

log = logging.getLogger(__name__)

GiB = 1024**3
INFO_TIMEOUT = 60.0
FLATTEN_PROGRESS_INTERVAL = 2.0  # seconds between progress reports

_INFO_LIMITS = (f"--as={GiB}", "--cpu=30", "--core=0")
_CONVERT_ADDRESS_SPACE = 2 * GiB
# Only these VMDK kinds keep all their data in the one file we downloaded.
_VMDK_SELF_CONTAINED = frozenset({"monolithicSparse", "streamOptimized"})
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")

FETCHED = "fetched"
CONVERTED = "converted.qcow2"


@dataclass(frozen=True)
class Inspection:
    """What some untrusted bytes are: the format qemu-img knows them by (read
    from their header; None if refused before qemu-img saw them), the size a
    guest would see (None if unknown), and why no disk can be made of them
    (None when one can). Reasons are generic: they name no file of the node."""

    format: str | None
    virtual_size: int | None
    refusal: str | None


async def inspect(box: Sandbox, name: str = FETCHED) -> Inspection:
    """Read the file ``name`` of ``box``: its format from its header
    (``formats``), then, unless that refused it, qemu-img's description of
    it read as that format, as the sandbox user. A refusal is part of the
    answer, not an exception. The file is the agent's alone again after."""
    try:
        fmt = formats.sniff(box.path(name)).format
    except ImageError as exc:
        return Inspection(None, None, exc.message)
    box.hand_over(name)
    try:
        info = await describe(box, name, fmt)
    except ImageError as exc:
        return Inspection(fmt, None, exc.message)
    finally:
        box.take_back(name)
    size = int(info["virtual-size"])
    try:
        if info.get("format") != fmt:
            raise ImageError("the file is not a usable disk image")
        refuse_external_files(info)
        if fmt == "raw":
            await asyncio.to_thread(_check_raw_disk, box.path(name))
    except ImageError as exc:
        return Inspection(fmt, size, exc.message)
    return Inspection(fmt, size, None)


async def make_qcow2(box: Sandbox, *, max_bytes: int) -> tuple[str, int, Path]:
    """Check the file FETCHED of ``box``, and make it a standalone qcow2 of
    at most ``max_bytes``, still in the box. Return (source format, virtual
    size, path of the standalone qcow2, the agent's own again); ImageError
    says why no disk can be made of it."""
    found = await inspect(box, FETCHED)
    if found.refusal is not None:
        raise ImageError(found.refusal)
    assert found.format is not None and found.virtual_size is not None
    if found.format == "qcow2":
        return found.format, found.virtual_size, box.path(FETCHED)
    virtual_size, converted = await _convert(box, found.format, max_bytes=max_bytes)
    return found.format, virtual_size, converted


async def _convert(box: Sandbox, fmt: str, *, max_bytes: int) -> tuple[int, Path]:
    """FETCHED (checked, read as ``fmt``) converted to CONVERTED in the box."""
    box.hand_over(FETCHED)
    try:
        await run(["convert", "-q", "-U", "-f", fmt, "-O", "qcow2", box.inner(FETCHED),
                   box.inner(CONVERTED)],
                  limits=(f"--as={_CONVERT_ADDRESS_SPACE}", f"--fsize={max_bytes}", "--core=0"),
                  sandbox=box)
    except QemuImgFailed as exc:
        # A compressed image can expand far beyond its download; the file
        # size limit above stops it filling the disk.
        if "File too large" in exc.stderr:
            raise ImageError(f"the image is larger than this node's limit of "
                             f"{max_bytes} bytes once converted to qcow2") from exc
        raise ImageError(f"converting the {fmt} image to qcow2 failed") from exc
    finally:
        box.take_back(FETCHED)
    result = await describe(box, CONVERTED, "qcow2")
    refuse_external_files(result)
    converted = box.take_back(CONVERTED)
    await asyncio.to_thread(fsync_path, converted)
    return int(result["virtual-size"]), converted


async def describe(where: Sandbox, name: str, fmt: str) -> dict[str, Any]:
    """qemu-img's description (``info``) of the file ``name`` of a sandbox,
    read as ``fmt``, as the sandbox user (every blob is untrusted bytes:
    uploaded, fetched, or a snapshot of what a guest wrote)."""
    try:
        out = await run(["info", "-U", "--output=json", "-f", fmt, where.inner(name)],
                        limits=_INFO_LIMITS, timeout=INFO_TIMEOUT, sandbox=where)
        info = json.loads(out)
        int(info["virtual-size"])
    except QemuImgFailed as exc:
        raise ImageError(f"the file is not a usable {fmt} image") from exc
    except TimeoutError as exc:
        raise ImageError(f"qemu-img took more than {INFO_TIMEOUT:g} seconds to read the "
                         "image; it is refused") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError("qemu-img could not describe the image") from exc
    if not isinstance(info, dict):
        raise ImageError("qemu-img could not describe the image")
    return info


def refuse_external_files(info: dict[str, Any]) -> None:
    """What qemu-img reports, checked again: nothing that would make QEMU
    open other files on this host (``formats`` refused these already)."""
    fmt = info.get("format")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageError(f"the {fmt} image refers to a backing file; upload a standalone "
                         "image (qemu-img convert makes one)")
    if info.get("encrypted"):
        raise ImageError(f"the {fmt} image is encrypted; upload an unencrypted image")
    specific = info.get("format-specific") or {}
    data = specific.get("data") or {}
    if fmt == "qcow2":
        if data.get("data-file"):
            raise ImageError("the qcow2 image keeps its data in a separate file; "
                             "upload a standalone image")
        if data.get("corrupt"):
            raise ImageError("the qcow2 image is marked corrupt")
    if fmt == "vmdk":
        kind = data.get("create-type")
        if kind not in _VMDK_SELF_CONTAINED:
            raise ImageError("VMDK images of this type refer to other files; "
                             "upload a monolithicSparse or streamOptimized VMDK")
        if len(data.get("extents") or []) > 1:
            raise ImageError("the VMDK image refers to other files; "
                             "upload a single-file VMDK")


def _check_raw_disk(path: Path) -> None:
    """Raw data is accepted only if it looks like a disk: anything at all is
    'raw' to qemu-img, including an error page or a tarball."""
    size = path.stat().st_size
    with path.open("rb") as f:
        f.seek(510)
        boot = f.read(2)
        f.seek(0x8001)
        iso = f.read(5)
    if boot != b"\x55\xaa" and iso != b"CD001":
        raise ImageError("the file is not a disk image: qemu-img does not recognise its "
                         "format, and as raw data it has neither a boot sector nor an "
                         "ISO 9660 signature")
    if size % 512:
        raise ImageError(f"the file is not a disk image: as raw data its size ({size} "
                         "bytes) is not a whole number of 512-byte sectors")


async def flatten(source: Path, dest: Path,
                  on_progress: Callable[[float], Awaitable[None]]) -> None:
    """Convert a qcow2 and everything under it into one standalone qcow2,
    calling ``on_progress(percent)`` every FLATTEN_PROGRESS_INTERVAL seconds.
    The source may be in use (a guest's disk): it is opened without a lock."""
    proc = await _spawn(["qemu-img", "convert", "-p", "-U", "-f", "qcow2", "-O", "qcow2",
                         str(source), str(dest)])
    assert proc.stdout is not None and proc.stderr is not None
    last = 0.0
    async with _reaped(proc):
        while chunk := await proc.stdout.read(4096):
            found = _PROGRESS.findall(chunk)
            now = time.monotonic()
            if found and now - last >= FLATTEN_PROGRESS_INTERVAL:
                last = now
                await on_progress(float(found[-1]))
        err = await proc.stderr.read()
        await proc.wait()
    if proc.returncode != 0:
        stderr = err.decode(errors="replace").strip()
        log.warning("qemu-img convert of %s failed (%s): %s", source, proc.returncode,
                    stderr[-2000:])
        raise QemuImgFailed(stderr, proc.returncode)


class QemuImgFailed(Exception):
    """qemu-img failed. Its stderr names host files: it is for the agent's
    log and for telling reasons apart, never for a user."""

    def __init__(self, stderr: str, returncode: int | None):
        super().__init__(f"qemu-img exited with {returncode}: {stderr}")
        self.stderr = stderr


async def run(args: list[str], *, limits: tuple[str, ...] = (),
              timeout: float | None = None, sandbox: Sandbox | None = None) -> str:
    """Run qemu-img (under prlimit when limits are given; as the sandbox's
    user, reaching only its files, when one is given); return stdout.
    Raises QemuImgFailed."""
    command = (["prlimit", *limits, "qemu-img", *args] if limits else ["qemu-img", *args])
    if sandbox is not None:
        command = sandbox.command(command)
    proc = await _spawn(command, pass_fds=sandbox.pass_fds if sandbox else ())
    failpoints.hit("mid-qemu-img")
    async with _reaped(proc):
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        stderr = err.decode(errors="replace").strip()
        log.warning("qemu-img %s failed (%s): %s", args[0], proc.returncode, stderr[-2000:])
        raise QemuImgFailed(stderr, proc.returncode)
    return out.decode()


async def _spawn(command: list[str], pass_fds: tuple[int, ...] = ()
                 ) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "LC_ALL": "C"},
        pass_fds=pass_fds)


@contextlib.asynccontextmanager
async def _reaped(proc: asyncio.subprocess.Process) -> AsyncIterator[None]:
    """Cancelled or timed out: never leave qemu-img running on its own."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
