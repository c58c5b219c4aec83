"""Every qemu-img run of the agent, and what it will accept from one.

A fetched file is hostile until proven otherwise. qemu-img describes it
under hard limits (parsing a crafted file can be made to eat memory and
CPU: OpenStack's CVE-2015-5162); anything that could make QEMU read other
files on this host (backing files, external data files, multi-file VMDKs)
is refused; raw data must look like a disk; and what is left is converted to
a standalone qcow2 under a file size limit. The same runner makes guest
disks (``overlay``) and flattens snapshots, so no qemu-img is ever left
running when its caller is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from nodeagent.images.errors import ImageError
from nodeagent.images.files import fsync_path

GiB = 1024**3
INFO_TIMEOUT = 60.0
FLATTEN_PROGRESS_INTERVAL = 2.0  # seconds between progress reports

_INFO_LIMITS = (f"--as={GiB}", "--cpu=30")
_CONVERT_ADDRESS_SPACE = 2 * GiB

# Formats we convert to qcow2. Others qemu-img knows (luks, qed, dmg, ...)
# are refused: they are rare for cloud images and each brings its own risks.
_CONVERTIBLE = frozenset({"raw", "vmdk", "vdi", "vhdx", "vpc", "qcow"})
# Only these VMDK kinds keep all their data in the one file we downloaded;
# the others name extent files by path, which could be any file on this host.
_VMDK_SELF_CONTAINED = frozenset({"monolithicSparse", "streamOptimized"})
_PROGRESS = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


async def make_qcow2(fetched: Path, converted: Path, *, max_bytes: int
                     ) -> tuple[str, int, Path]:
    """Check what was fetched, and make it a standalone qcow2 (at
    ``converted``, unless it is one already) of at most ``max_bytes``.
    Return (source format, virtual size, path of the standalone qcow2)."""
    probed = await describe(fetched, None)
    fmt = str(probed.get("format", ""))
    if fmt != "qcow2" and fmt not in _CONVERTIBLE:
        raise ImageError(f"{fmt or 'this'} images are not supported; "
                         "use qcow2, a raw disk, VMDK, VDI, VHD or VHDX")
    # From here on the format is stated, never guessed again.
    info = await describe(fetched, fmt)
    refuse_external_files(info, fetched)
    if fmt == "raw":
        await asyncio.to_thread(_check_raw_disk, fetched)
    if fmt == "qcow2":
        return fmt, int(info["virtual-size"]), fetched
    try:
        await run(["convert", "-q", "-f", fmt, "-O", "qcow2", str(fetched), str(converted)],
                  limits=(f"--as={_CONVERT_ADDRESS_SPACE}", f"--fsize={max_bytes}"))
    except ImageError as exc:
        # A compressed image can expand far beyond its download; the file
        # size limit above stops it filling the disk.
        if "File too large" in exc.message:
            raise ImageError(f"the image is larger than this node's limit of "
                             f"{max_bytes} bytes once converted to qcow2") from exc
        raise ImageError(f"converting the {fmt} image to qcow2 failed: "
                         f"{exc.message}") from exc
    result = await describe(converted, "qcow2")
    refuse_external_files(result, converted)
    await asyncio.to_thread(fsync_path, converted)
    return fmt, int(result["virtual-size"]), converted


async def describe(path: Path, fmt: str | None) -> dict[str, Any]:
    """qemu-img's description of an image (``info``), read as ``fmt`` or,
    if None, as whatever qemu-img makes of it."""
    args = ["info", "--output=json"] + (["-f", fmt] if fmt else []) + [str(path)]
    try:
        out = await run(args, limits=_INFO_LIMITS, timeout=INFO_TIMEOUT)
        info = json.loads(out)
        int(info["virtual-size"])
    except ImageError as exc:
        raise ImageError(f"the file is not a usable disk image: {exc.message}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError("qemu-img could not describe the image") from exc
    if not isinstance(info, dict):
        raise ImageError("qemu-img could not describe the image")
    return info


def refuse_external_files(info: dict[str, Any], path: Path) -> None:
    """Refuse images that would make QEMU open other files on this host."""
    fmt = info.get("format")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageError(f"the {fmt} image refers to a backing file "
                         f"({info.get('backing-filename')}); upload a standalone image "
                         "(qemu-img convert makes one)")
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
            raise ImageError(f"VMDK images of type {kind} refer to other files; "
                             "upload a monolithicSparse or streamOptimized VMDK")
        for extent in data.get("extents") or []:
            name = Path(str(extent.get("filename", "")))
            if (path.parent / name).resolve() != path.resolve():
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
        raise ImageError(_complaint(err, proc.returncode))


async def run(args: list[str], *, limits: tuple[str, ...] = (),
              timeout: float | None = None) -> str:
    """Run qemu-img (under prlimit when limits are given); return stdout.
    Raises ImageError with qemu-img's own complaint."""
    command = (["prlimit", *limits, "qemu-img", *args] if limits else ["qemu-img", *args])
    proc = await _spawn(command)
    async with _reaped(proc):
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise ImageError(_complaint(err, proc.returncode))
    return out.decode()


async def _spawn(command: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "LC_ALL": "C"})


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


def _complaint(stderr: bytes, returncode: int | None) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return f"qemu-img exited with status {returncode}"
    text = lines[-1].removeprefix("qemu-img: ")
    # Our private file names mean nothing to a user.
    return re.sub(r"(?:/[^\s:'\"]*)?/\.partial/[^\s:'\"]+", "the image", text)
