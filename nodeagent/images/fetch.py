"""Fetching an image's bytes into a private file, hashing them on the way.

An image URL is untrusted twice over: where it points (``cloudstate.urlguard``)
and what comes back. So the download connects only to the addresses the
guard approved (a resolver pinned to them, so a name can't be re-resolved
elsewhere between check and connection), follows redirects by hand so each
hop is checked, sends the caller's headers and TLS context (``FirstHop``)
to the first host only, and streams under a size limit, a stall timeout and
a minimum rate. A file:// URL (an image an operator registered) is copied
under the same size limit.

Nothing here decides what the bytes are: any file may be a blob (as in
Shaken Fist); ``qemuimg`` inspects them when a disk is made from them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import os
import ssl
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
from yarl import URL

from cloudstate.pinned import PinnedResolver as _PinnedResolver
from cloudstate.urlguard import FetchPolicy, IPAddress, URLRefused, check_url
from nodeagent import failpoints
from nodeagent.images.errors import ImageError
from nodeagent.images.files import CHUNK, new_hasher, write_hashed
from nodeagent.images.inflight import ProgressCallback

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
PROGRESS_INTERVAL = 1.0  # seconds between progress reports

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Unchanged(ImageError):
    """The server's file is the one fetched before (same length and
    Last-Modified), so it was not fetched again."""


@dataclass(frozen=True)
class Fetched:
    """What was written: its size, its sha512, and when the server says it
    last changed (Last-Modified), if it did."""

    size: int
    sha512: str
    modified: float | None = None


@dataclasses.dataclass(frozen=True)
class FirstHop:
    """What goes with the first request only, never to where it redirects:
    a grant for another node's agent, and the TLS context that presents this
    node's certificate and checks that agent's (None: the system's CAs)."""

    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ssl: ssl.SSLContext | None = None


class Progress:
    """Tells listeners how a download goes, at most once a PROGRESS_INTERVAL."""

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


class Fetcher:
    def __init__(self, *, max_bytes: int, connect_timeout: float, idle_timeout: float,
                 min_rate: int, file_dirs: tuple[Path, ...] = ()):
        """``max_bytes`` bounds one image. A download that stalls for
        ``idle_timeout`` seconds, or averages less than ``min_rate`` bytes/s
        over such a window (a server dripping bytes to hold us forever), fails.
        A file:// URL is read only when the file lies inside ``file_dirs``
        (none: no file is read): etcd names the file, and a record planted
        there must not make the root agent copy /etc/shadow into a blob that
        other nodes and the portal then serve."""
        self.max_bytes = max_bytes
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.min_rate = min_rate
        self.file_dirs = tuple(Path(os.path.realpath(d)) for d in file_dirs)

    async def fetch(self, url: str, dest: Path, progress: Progress, policy: FetchPolicy,
                    first_hop: FirstHop,
                    unchanged: tuple[int | None, float | None] | None = None) -> Fetched:
        """Write what ``url`` holds to ``dest``. With ``unchanged`` (the
        length and Last-Modified of what was fetched from it before), raise
        Unchanged instead if the server answers with the same."""
        if urlsplit(url).scheme.lower() == "file":
            await checked(url, policy)
            return await self._copy_file(url, dest, progress)
        return await self._download(url, dest, progress, policy, first_hop, unchanged)

    async def _download(self, url: str, dest: Path, progress: Progress,
                        policy: FetchPolicy, first_hop: FirstHop,
                        unchanged: tuple[int | None, float | None] | None) -> Fetched:
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
                addresses = await checked(str(target), hop_policy)
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
            hop = first_hop if previous_host is None else FirstHop()
            try:
                async with aiohttp.ClientSession(
                    connector=connector, timeout=timeout, auto_decompress=False,
                    headers={"User-Agent": "sfcloud-nodeagent", "Accept-Encoding": "identity"},
                ) as session, session.get(target, allow_redirects=False, headers=hop.headers,
                                          ssl=hop.ssl or True) as response:
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
                    modified = _http_date(response.headers.get("Last-Modified"))
                    if unchanged is not None and (response.content_length, modified) == unchanged:
                        raise Unchanged(f"{url} has not changed since it was last fetched")
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
        length = response.content_length
        if length is not None and length > self.max_bytes:
            raise ImageError(f"the image at {url} is {length} bytes, more than this "
                             f"node's limit of {self.max_bytes} bytes")

    async def _stream(self, response: aiohttp.ClientResponse, dest: Path,
                      progress: Progress, host: str) -> Fetched:
        total = response.content_length
        hasher = new_hasher()
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
                        await asyncio.to_thread(write_hashed, out, hasher, pending)
                        pending, pending_bytes = [], 0
                        failpoints.hit("mid-download")
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
            await asyncio.to_thread(write_hashed, out, hasher, pending)
            await asyncio.to_thread(os.fsync, out.fileno())
        if total is not None and done != total:
            raise ImageError(_cut_short(host, done, total))
        progress.report(done, total, final=True)
        return Fetched(done, hasher.hexdigest(), _http_date(response.headers.get("Last-Modified")))

    async def _copy_file(self, url: str, dest: Path, progress: Progress) -> Fetched:
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ImageError(f"{url} names another machine; file:// URLs must be local")
        source = Path(unquote(parts.path))
        loop = asyncio.get_running_loop()

        def copy() -> Fetched:
            # The real path, links resolved, must be inside a registered
            # directory; it is what gets opened, and never through a link.
            real = Path(os.path.realpath(source))
            if not any(real.is_relative_to(allowed) for allowed in self.file_dirs):
                raise ImageError(f"{source} is outside the directories this node reads "
                                 "registered images from (SFCLOUD_FILE_IMAGE_DIRS)")
            try:
                src = open(real, "rb", opener=_no_follow)  # noqa: SIM115 - closed below
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
                hasher = new_hasher()
                done = 0
                while chunk := src.read(CHUNK):
                    done += len(chunk)
                    if done > self.max_bytes:
                        raise ImageError(f"{source} grew past this node's limit of "
                                         f"{self.max_bytes} bytes while being copied")
                    write_hashed(out, hasher, [chunk])
                    loop.call_soon_threadsafe(progress.report, done, details.st_size)
                os.fsync(out.fileno())
            return Fetched(done, hasher.hexdigest(), details.st_mtime)

        fetched = await asyncio.to_thread(copy)
        progress.report(fetched.size, fetched.size, final=True)
        return fetched


async def checked(url: str, policy: FetchPolicy) -> list[IPAddress]:
    try:
        return await check_url(url, policy)
    except URLRefused as exc:
        raise ImageError(exc.message) from exc


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _cut_short(host: str, done: int, total: int | None) -> str:
    expected = f" of {total}" if total is not None else ""
    return f"the download from {host} was cut short after {done}{expected} bytes"


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)
