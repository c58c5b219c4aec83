"""The node's image cache: fetch a disk image once, check it, keep it as qcow2.

Every image URL is untrusted input twice over: where it points (see
``cloudstate.urlguard``) and what comes back. So the download connects only
to addresses the guard approved, follows redirects by hand so each hop is
checked, and streams into a private partial file under bounded size and
time; then qemu-img inspects the bytes, refuses anything that could make
QEMU read other files on this host (backing files, external data files,
multi-file VMDKs), and converts what is left to a standalone qcow2. Only a
finished, checked image is renamed into place, with a JSON sidecar; a
failure at any step leaves nothing behind.

Layout under ``root``: ``<sha256(cache_key)>.qcow2`` and ``.json`` for each
image, ``.partial/`` for work in progress (emptied at start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import aiohttp
from yarl import URL

from cloudstate.pinned import PinnedResolver as _PinnedResolver
from cloudstate.urlguard import FetchPolicy, IPAddress, URLRefused, check_url

log = logging.getLogger(__name__)

GiB = 1024**3
MAX_REDIRECTS = 5
CHUNK = 1 << 20
PROGRESS_INTERVAL = 1.0  # seconds between progress reports
INFO_TIMEOUT = 60.0

# qemu-img parsing a hostile file can be made to eat memory and CPU
# (OpenStack's CVE-2015-5162), so inspection runs under hard limits.
_INFO_LIMITS = (f"--as={GiB}", "--cpu=30")
_CONVERT_ADDRESS_SPACE = 2 * GiB

# Formats we convert to qcow2. Others qemu-img knows (luks, qed, dmg, ...)
# are refused: they are rare for cloud images and each brings its own risks.
_CONVERTIBLE = frozenset({"raw", "vmdk", "vdi", "vhdx", "vpc", "qcow"})
# Only these VMDK kinds keep all their data in the one file we downloaded;
# the others name extent files by path, which could be any file on this host.
_VMDK_SELF_CONTAINED = frozenset({"monolithicSparse", "streamOptimized"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_WEB_PAGES = frozenset({"text/html", "application/xhtml+xml"})
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

ProgressCallback = Callable[[int, int | None], None]


class ImageError(Exception):
    """An image could not be fetched or used; the message is for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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
    ):
        """``max_bytes`` bounds one image, both as fetched and as converted.
        A download that stalls for ``idle_timeout`` seconds, or averages less
        than ``min_rate`` bytes/s over such a window (a server dripping bytes
        to hold us forever), fails."""
        self.root = Path(root)
        self.policy = policy
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.min_rate = min_rate
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
        info = await _image_info(ready, "qcow2")
        _refuse_external_files(info, ready)
        size, sha256 = await asyncio.to_thread(_hash_file, ready)
        sidecar = ready.with_suffix(".json")
        meta = {"cache_key": cache_key, "url": url, "sha256": sha256, "size": size,
                "virtual_size": int(info["virtual-size"]), "format": "qcow2",
                "source_format": "qcow2", "fetched_at": time.time()}
        try:
            sidecar.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            await asyncio.to_thread(_fsync_path, sidecar)
            await asyncio.to_thread(_fsync_path, ready)
            for path in (ready, sidecar):
                path.chmod(0o644)
            final = self.image_path(cache_key)
            os.replace(ready, final)
            os.replace(sidecar, self._sidecar_path(cache_key))
            await asyncio.to_thread(_fsync_path, self.root)
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
        headers: Mapping[str, str] | None = None,
    ) -> CachedImage:
        """Return the cached image for ``cache_key``, fetching ``url`` if needed.

        Callers asking for a key that is already downloading share that
        download and its outcome. ``on_progress(done_bytes, total_bytes or
        None)`` is called at most once a second while bytes arrive, and once
        at the end. ``policy`` overrides the cache's own, e.g. to allow
        file:// for an image an operator registered. ``headers`` go with the
        first request only, never to where it redirects (a grant for another
        node's agent, say).
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
                            headers or {}))
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
                     headers: Mapping[str, str]) -> CachedImage:
        digest = _digest(cache_key)
        self._partial.mkdir(parents=True, exist_ok=True)
        stem = self._partial / f"{digest[:16]}-{secrets.token_hex(4)}"
        fetched, converted, sidecar = (stem.with_suffix(s) for s in (".fetch", ".qcow2", ".json"))
        progress = _Progress(listeners)
        try:
            if urlsplit(url).scheme.lower() == "file":
                await _checked(url, policy)
                size, sha256 = await self._copy_file(url, fetched, progress)
            else:
                size, sha256 = await self._download(url, fetched, progress, policy, headers)
            if expected is not None and sha256 != expected:
                raise ImageError(f"the image at {url} has sha256 {sha256}, "
                                 f"not the expected {expected}")
            source_format, virtual_size, ready = await self._make_qcow2(fetched, converted)
            meta = {"cache_key": cache_key, "url": url, "sha256": sha256, "size": size,
                    "virtual_size": virtual_size, "format": "qcow2",
                    "source_format": source_format, "fetched_at": time.time()}
            sidecar.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
            await asyncio.to_thread(_fsync_path, sidecar)
            for path in (ready, sidecar):
                path.chmod(0o644)
            final = self.image_path(cache_key)
            os.replace(ready, final)
            os.replace(sidecar, self._sidecar_path(cache_key))
            await asyncio.to_thread(_fsync_path, self.root)
            log.info("cached %s as %s (%s, %d bytes)", url, final.name, source_format, size)
            return CachedImage(path=final, format="qcow2", virtual_size=virtual_size,
                               size=size, sha256=sha256)
        except OSError as exc:
            raise ImageError(f"the node could not store the image from {url}: "
                             f"{exc.strerror or exc}") from exc
        finally:
            for path in (fetched, converted, sidecar):
                path.unlink(missing_ok=True)

    # --- fetching ----------------------------------------------------------

    async def _download(self, url: str, dest: Path, progress: _Progress,
                        policy: FetchPolicy, headers: Mapping[str, str]) -> tuple[int, str]:
        # Whatever the caller trusts, a web server may not send us to a file.
        hop_policy = dataclasses.replace(policy, allow_file=False)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.connect_timeout,
                                        sock_connect=self.connect_timeout,
                                        sock_read=self.idle_timeout)
        previous_host = None
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                # Parse with yarl, as aiohttp will, and check yarl's own
                # rendering, so the guard and the connection agree on the host.
                target = URL(url)
            except (ValueError, TypeError) as exc:
                raise ImageError(f"{url!r} is not a valid URL: {exc}") from exc
            try:
                addresses = await _checked(str(target), hop_policy)
            except ImageError as exc:
                if previous_host is None:
                    raise
                raise ImageError(f"{previous_host} redirected to {url}, but "
                                 f"{exc.message}") from exc
            host = (target.raw_host or "").lower()
            if urlsplit(str(target)).hostname != host:
                raise ImageError(f"{url!r} is ambiguous about which host it names")
            connector = aiohttp.TCPConnector(resolver=_PinnedResolver(host, addresses),
                                             use_dns_cache=False)
            try:
                async with aiohttp.ClientSession(
                    connector=connector, timeout=timeout, auto_decompress=False,
                    headers={"User-Agent": "sfcloud-nodeagent", "Accept-Encoding": "identity"},
                ) as session, session.get(target, allow_redirects=False,
                                          headers=headers if previous_host is None else None,
                                          ) as response:
                    if response.status in _REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise ImageError(f"{host} sent a redirect without a location")
                        try:
                            url = str(response.url.join(URL(location)))
                        except ValueError as exc:
                            raise ImageError(
                                f"{host} redirected to an invalid URL {location!r}") from exc
                        previous_host = host
                        continue
                    self._check_response(response, url, host)
                    return await self._stream(response, dest, progress, host)
            except aiohttp.ConnectionTimeoutError as exc:
                raise ImageError(f"could not connect to {host} within "
                                 f"{self.connect_timeout:g} seconds") from exc
            except TimeoutError as exc:
                raise ImageError(f"{host} stopped sending data for "
                                 f"{self.idle_timeout:g} seconds; giving up") from exc
            except aiohttp.ClientConnectorError as exc:
                raise ImageError(f"could not connect to {host}: "
                                 f"{exc.os_error.strerror or exc.os_error}") from exc
            except aiohttp.ClientError as exc:
                raise ImageError(f"fetching {url} failed: {exc}") from exc
        raise ImageError(f"fetching the image took more than {MAX_REDIRECTS} redirects")

    def _check_response(self, response: aiohttp.ClientResponse, url: str, host: str) -> None:
        if response.status != 200:
            reason = f" {response.reason}" if response.reason else ""
            raise ImageError(f"{host} answered {response.status}{reason} for {url}")
        if response.content_type in _WEB_PAGES:
            raise ImageError(f"{url} returned a web page ({response.content_type}), not a "
                             "disk image; give the URL of the image file itself")
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise ImageError(f"the image at {url} is {length} bytes, more than this "
                             f"node's limit of {self.max_bytes} bytes")

    async def _stream(self, response: aiohttp.ClientResponse, dest: Path,
                      progress: _Progress, host: str) -> tuple[int, str]:
        total = response.content_length
        hasher = hashlib.sha256()
        done = 0
        pending: list[bytes] = []
        pending_bytes = 0
        window_start, window_done = time.monotonic(), 0
        with dest.open("wb") as out:
            try:
                async for chunk in response.content.iter_chunked(CHUNK):
                    done += len(chunk)
                    if done > self.max_bytes:
                        raise ImageError(f"the image from {host} is larger than this "
                                         f"node's limit of {self.max_bytes} bytes")
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    # Hash and write off the event loop, in batches, so a
                    # slow disk does not stall the agent.
                    if pending_bytes >= CHUNK:
                        await asyncio.to_thread(_write, out, hasher, pending)
                        pending, pending_bytes = [], 0
                    progress.report(done, total)
                    now = time.monotonic()
                    if now - window_start >= self.idle_timeout:
                        if done - window_done < self.min_rate * (now - window_start):
                            raise ImageError(f"{host} is sending the image too slowly "
                                             f"(under {self.min_rate} bytes a second); "
                                             "giving up")
                        window_start, window_done = now, done
            except aiohttp.ClientPayloadError as exc:
                raise ImageError(_cut_short(host, done, total)) from exc
            await asyncio.to_thread(_write, out, hasher, pending)
            await asyncio.to_thread(os.fsync, out.fileno())
        if total is not None and done != total:
            raise ImageError(_cut_short(host, done, total))
        progress.report(done, total, final=True)
        return done, hasher.hexdigest()

    async def _copy_file(self, url: str, dest: Path, progress: _Progress) -> tuple[int, str]:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ImageError(f"{url} names another machine; file:// URLs must be local")
        source = Path(unquote(parts.path))
        loop = asyncio.get_running_loop()

        def copy() -> tuple[int, str]:
            try:
                src = source.open("rb")
            except OSError as exc:
                raise ImageError(f"{source} could not be read on this node: "
                                 f"{exc.strerror or exc}") from exc
            with src, dest.open("wb") as out:
                details = os.fstat(src.fileno())
                if not stat.S_ISREG(details.st_mode):
                    raise ImageError(f"{source} is not a file")
                if details.st_size > self.max_bytes:
                    raise ImageError(f"{source} is {details.st_size} bytes, more than this "
                                     f"node's limit of {self.max_bytes} bytes")
                hasher = hashlib.sha256()
                done = 0
                while chunk := src.read(CHUNK):
                    done += len(chunk)
                    if done > self.max_bytes:
                        raise ImageError(f"{source} grew past this node's limit of "
                                         f"{self.max_bytes} bytes while being copied")
                    _write(out, hasher, [chunk])
                    loop.call_soon_threadsafe(progress.report, done, details.st_size)
                os.fsync(out.fileno())
            return done, hasher.hexdigest()

        done, sha256 = await asyncio.to_thread(copy)
        progress.report(done, done, final=True)
        return done, sha256

    # --- checking and converting -------------------------------------------

    async def _make_qcow2(self, fetched: Path, converted: Path) -> tuple[str, int, Path]:
        """Return (source format, virtual size, path of the standalone qcow2)."""
        probed = await _image_info(fetched, None)
        fmt = str(probed.get("format", ""))
        if fmt != "qcow2" and fmt not in _CONVERTIBLE:
            raise ImageError(f"{fmt or 'this'} images are not supported; "
                             "use qcow2, a raw disk, VMDK, VDI, VHD or VHDX")
        # From here on the format is stated, never guessed again.
        info = await _image_info(fetched, fmt)
        _refuse_external_files(info, fetched)
        if fmt == "raw":
            await asyncio.to_thread(_check_raw_disk, fetched)
        if fmt == "qcow2":
            return fmt, int(info["virtual-size"]), fetched
        try:
            await _qemu_img(["convert", "-q", "-f", fmt, "-O", "qcow2",
                             str(fetched), str(converted)],
                            limits=(f"--as={_CONVERT_ADDRESS_SPACE}",
                                    f"--fsize={self.max_bytes}"))
        except ImageError as exc:
            # A compressed image can expand far beyond its download; the file
            # size limit above stops it filling the disk.
            if "File too large" in exc.message:
                raise ImageError(f"the image is larger than this node's limit of "
                                 f"{self.max_bytes} bytes once converted to qcow2") from exc
            raise ImageError(f"converting the {fmt} image to qcow2 failed: "
                             f"{exc.message}") from exc
        result = await _image_info(converted, "qcow2")
        _refuse_external_files(result, converted)
        await asyncio.to_thread(_fsync_path, converted)
        return fmt, int(result["virtual-size"]), converted


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
            await _qemu_img(args)
        except ImageError as exc:
            raise ImageError(f"creating the disk failed: {exc.message}") from exc
        await asyncio.to_thread(_fsync_path, tmp)
        os.link(tmp, dest)  # unlike rename, refuses to replace an existing disk
        await asyncio.to_thread(_fsync_path, dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


# --- helpers -------------------------------------------------------------------


class _Progress:
    def __init__(self, listeners: list[ProgressCallback]):
        self._listeners = listeners
        self._last = 0.0

    def report(self, done: int, total: int | None, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        for listener in list(self._listeners):
            try:
                listener(done, total)
            except Exception:
                # A broken progress display must not fail the download.
                log.exception("image progress callback failed")


async def _checked(url: str, policy: FetchPolicy) -> list[IPAddress]:
    try:
        return await check_url(url, policy)
    except URLRefused as exc:
        raise ImageError(exc.message) from exc


async def _image_info(path: Path, fmt: str | None) -> dict[str, Any]:
    args = ["info", "--output=json"] + (["-f", fmt] if fmt else []) + [str(path)]
    try:
        out = await _qemu_img(args, limits=_INFO_LIMITS, timeout=INFO_TIMEOUT)
        info = json.loads(out)
        int(info["virtual-size"])
    except ImageError as exc:
        raise ImageError(f"the file is not a usable disk image: {exc.message}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError("qemu-img could not describe the image") from exc
    if not isinstance(info, dict):
        raise ImageError("qemu-img could not describe the image")
    return info


def _refuse_external_files(info: dict[str, Any], path: Path) -> None:
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


async def _qemu_img(args: list[str], *, limits: tuple[str, ...] = (),
                    timeout: float | None = None) -> str:
    """Run qemu-img (under prlimit when limits are given); return stdout.
    Raises ImageError with qemu-img's own complaint."""
    command = (["prlimit", *limits, "qemu-img", *args] if limits else ["qemu-img", *args])
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "LC_ALL": "C"})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        # Cancelled or timed out: never leave qemu-img running on its own.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise ImageError(_qemu_complaint(err, proc.returncode))
    return out.decode()


def _qemu_complaint(stderr: bytes, returncode: int | None) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return f"qemu-img exited with status {returncode}"
    text = lines[-1].removeprefix("qemu-img: ")
    # Our private file names mean nothing to a user.
    return re.sub(r"(?:/[^\s:'\"]*)?/\.partial/[^\s:'\"]+", "the image", text)


def _write(out: BinaryIO, hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)
        out.write(chunk)


def _hash_file(path: Path) -> tuple[int, str]:
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            size += len(chunk)
            hasher.update(chunk)
    return size, hasher.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(cache_key: str) -> str:
    return hashlib.sha256(cache_key.encode()).hexdigest()


def _cut_short(host: str, done: int, total: int | None) -> str:
    expected = f" of {total}" if total is not None else ""
    return f"the download from {host} was cut short after {done}{expected} bytes"


def _check_sha256_arg(value: str | None) -> str | None:
    if value is None:
        return None
    normalised = value.strip().lower()
    if not _SHA256.match(normalised):
        raise ImageError(f"{value!r} is not a sha256 checksum (64 hexadecimal digits)")
    return normalised


def _check_expected(image: CachedImage, expected: str | None, url: str) -> None:
    if expected is not None and image.sha256 != expected:
        raise ImageError(f"the image at {url} has sha256 {image.sha256}, not the "
                         f"expected {expected} (the cached copy must be removed "
                         "before another can be fetched)")
