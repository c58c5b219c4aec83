"""The image cache against real qemu-img and HTTP servers on loopback.

Every server here is one the test starts on 127.0.0.x; nothing else is
contacted. Test images are made with qemu-img in tmp directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import random
import struct
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from cloudstate import urlguard
from cloudstate.urlguard import FetchPolicy
from nodeagent.images import fetch
from nodeagent.images.cache import CachedImage, ImageCache
from nodeagent.images.errors import ImageError
from nodeagent.images.overlay import create_overlay
from nodeagent.images.qemuimg import GiB
from tests.support.inotify import OpenWatch

pytestmark = [
    pytest.mark.integration,
]

LOOPBACK = FetchPolicy(allowed_networks=[ipaddress.ip_network("127.0.0.0/8")])
MiB = 1 << 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- test images -------------------------------------------------------------


def qemu_img(*args: str) -> str:
    return subprocess.run(["qemu-img", *args], check=True, capture_output=True,
                          text=True).stdout


def info(path: Path) -> dict:
    return json.loads(qemu_img("info", "--output=json", str(path)))


def make_qcow2(directory: Path, size: str = "16M", name: str = "img.qcow2") -> bytes:
    path = directory / name
    qemu_img("create", "-q", "-f", "qcow2", str(path), size)
    return path.read_bytes()


def make_raw_disk(size: int = 2 * MiB) -> bytes:
    data = bytearray(random.Random(1).randbytes(size))
    data[510:512] = b"\x55\xaa"
    return bytes(data)


def not_a_disk(size: int = MiB + 7) -> bytes:
    data = bytearray(random.Random(2).randbytes(size))
    data[510:512] = b"\x00\x00"
    return bytes(data)


# --- servers -----------------------------------------------------------------


class Server:
    """An aiohttp server on loopback whose routes each test fills in; it
    counts the requests each path received."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.routes: dict[str, Handler] = {}
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()  # lets stalling handlers end at teardown
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def serve(self, path: str, body: bytes, content_type: str = "application/octet-stream",
              delay: float = 0.0) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(delay)
            return web.Response(body=body, content_type=content_type)
        self.routes[path] = handler

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": location})
        self.routes[path] = handler

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        handler = self.routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


class RawServer:
    """A hand-written HTTP server for responses aiohttp won't produce:
    bodies cut short, stalls, drips."""

    def __init__(self, respond: Callable[[asyncio.StreamWriter], Awaitable[None]]):
        self._respond = respond
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self._respond(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if hasattr(self._server, "close_clients"):
            self._server.close_clients()

    def url(self, path: str = "/image") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def cache(tmp_path: Path) -> ImageCache:
    return ImageCache(tmp_path / "cache", LOOPBACK, connect_timeout=2, idle_timeout=2)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_nothing_cached(cache: ImageCache) -> None:
    assert files_under(cache.root) == []


# --- fetching and caching ----------------------------------------------------


async def test_qcow2_is_cached(cache: ImageCache, server: Server, tmp_path: Path) -> None:
    body = make_qcow2(tmp_path)
    server.serve("/img.qcow2", body)
    seen: list[tuple[int, int | None]] = []
    image = await cache.ensure(server.url("/img.qcow2"), "k1", on_progress=lambda d, t:
                               seen.append((d, t)))
    assert image.format == "qcow2"
    assert image.sha256 == hashlib.sha256(body).hexdigest()
    assert image.size == len(body)
    assert image.virtual_size == 16 * MiB
    assert image.path == cache.image_path("k1")
    assert image.path.read_bytes() == body
    assert seen[-1] == (len(body), len(body))
    assert cache.lookup("k1") == image
    sidecar = json.loads(image.path.with_suffix(".json").read_text())
    assert sidecar["url"] == server.url("/img.qcow2")
    assert sidecar["sha256"] == image.sha256
    assert sidecar["virtual_size"] == 16 * MiB
    assert sidecar["source_format"] == "qcow2"
    assert files_under(cache.root) == sorted([image.path, image.path.with_suffix(".json")])


async def test_raw_disk_is_converted(cache: ImageCache, server: Server) -> None:
    body = make_raw_disk()
    server.serve("/disk.img", body)
    image = await cache.ensure(server.url("/disk.img"), "raw")
    details = info(image.path)
    assert details["format"] == "qcow2"
    assert details["virtual-size"] == len(body) == image.virtual_size
    assert "backing-filename" not in details
    assert image.sha256 == hashlib.sha256(body).hexdigest()
    # The guest sees the same bytes the server sent.
    out = image.path.parent / "check.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", str(image.path), str(out))
    assert out.read_bytes() == body


async def test_iso_is_accepted(cache: ImageCache, server: Server) -> None:
    body = bytearray(64 * 2048)
    body[0x8001:0x8006] = b"CD001"
    server.serve("/x.iso", bytes(body))
    image = await cache.ensure(server.url("/x.iso"), "iso")
    assert image.virtual_size == len(body)


async def test_vmdk_is_converted(cache: ImageCache, server: Server, tmp_path: Path) -> None:
    raw = tmp_path / "src.raw"
    raw.write_bytes(make_raw_disk(MiB))
    vmdk = tmp_path / "src.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
             str(raw), str(vmdk))
    server.serve("/x.vmdk", vmdk.read_bytes())
    image = await cache.ensure(server.url("/x.vmdk"), "vmdk")
    assert info(image.path)["format"] == "qcow2"
    assert json.loads(image.path.with_suffix(".json").read_text())["source_format"] == "vmdk"


async def test_concurrent_callers_share_one_download(cache: ImageCache, server: Server,
                                                     tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path), delay=0.3)
    progress: Counter[str] = Counter()
    results = await asyncio.gather(*(
        cache.ensure(server.url("/img.qcow2"), "shared",
                     on_progress=lambda d, t, n=n: progress.update([n]))
        for n in ("a", "b", "c")))
    assert server.hits["/img.qcow2"] == 1
    assert results[0] == results[1] == results[2]
    assert set(progress) == {"a", "b", "c"}


async def test_cached_image_needs_no_network(cache: ImageCache, server: Server,
                                             tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    first = await cache.ensure(server.url("/img.qcow2"), "k")
    again = await cache.ensure(server.url("/img.qcow2"), "k")
    # A restarted agent finds it too, even if the server is gone.
    await server.stop()
    restarted = ImageCache(cache.root, LOOPBACK)
    restarted.cleanup_partials()
    third = await restarted.ensure("http://127.0.0.1:1/gone", "k")
    assert first == again == third
    assert server.hits["/img.qcow2"] == 1


async def test_concurrent_callers_share_a_failure_and_may_retry(
        cache: ImageCache, server: Server, tmp_path: Path) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        raise web.HTTPServiceUnavailable()
    server.routes["/img.qcow2"] = broken
    outcomes = await asyncio.gather(
        cache.ensure(server.url("/img.qcow2"), "k"),
        cache.ensure(server.url("/img.qcow2"), "k"), return_exceptions=True)
    assert server.hits["/img.qcow2"] == 1
    for outcome in outcomes:
        assert isinstance(outcome, ImageError)
        assert "503" in outcome.message
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    assert (await cache.ensure(server.url("/img.qcow2"), "k")).format == "qcow2"
    assert server.hits["/img.qcow2"] == 2


async def test_a_waiter_giving_up_does_not_cancel_the_download(
        cache: ImageCache, server: Server, tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path), delay=0.3)
    impatient = asyncio.create_task(cache.ensure(server.url("/img.qcow2"), "k"))
    patient = asyncio.create_task(cache.ensure(server.url("/img.qcow2"), "k"))
    await asyncio.sleep(0.1)
    impatient.cancel()
    assert (await patient).format == "qcow2"
    assert server.hits["/img.qcow2"] == 1


async def test_file_url_when_allowed(cache: ImageCache, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    body = make_qcow2(tmp_path / "src", name="a b.qcow2")
    url = f"file://{tmp_path}/src/a%20b.qcow2"
    with pytest.raises(ImageError, match="file://"):
        await cache.ensure(url, "f")
    image = await cache.ensure(url, "f", policy=FetchPolicy(allow_file=True))
    assert image.sha256 == hashlib.sha256(body).hexdigest()
    assert files_under(cache.root / ".partial") == []


async def test_unreadable_file_url(cache: ImageCache, tmp_path: Path) -> None:
    allow = FetchPolicy(allow_file=True)
    with pytest.raises(ImageError, match="could not be read"):
        await cache.ensure(f"file://{tmp_path}/missing.qcow2", "f", policy=allow)
    with pytest.raises(ImageError, match="must be local"):
        await cache.ensure(f"file://elsewhere{tmp_path}/x.qcow2", "f", policy=allow)
    assert_nothing_cached(cache)


async def test_close_cancels_downloads(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(30)

    cache = ImageCache(tmp_path / "cache", LOOPBACK)
    async with RawServer(respond) as raw:
        waiting = asyncio.create_task(cache.ensure(raw.url(), "k"))
        await asyncio.sleep(0.3)
        await cache.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert_nothing_cached(cache)


async def test_remove_and_cleanup(cache: ImageCache, server: Server, tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    image = await cache.ensure(server.url("/img.qcow2"), "k")
    cache.remove("k")
    assert cache.lookup("k") is None
    assert files_under(cache.root) == []
    # Left-overs of a crash: a partial download and an image whose sidecar
    # was never written.
    (cache.root / ".partial" / "x.fetch").write_bytes(b"half")
    image.path.write_bytes(b"orphan")
    cache.cleanup_partials()
    assert files_under(cache.root) == []
    assert (cache.root / ".partial").is_dir()


# --- refusals: nothing may be left behind ------------------------------------


async def test_404(cache: ImageCache, server: Server) -> None:
    with pytest.raises(ImageError, match="404 Not Found") as caught:
        await cache.ensure(server.url("/missing.qcow2"), "k")
    assert "127.0.0.1" in caught.value.message
    assert_nothing_cached(cache)


async def test_web_page_refused(cache: ImageCache, server: Server) -> None:
    server.serve("/page", b"<html><body>Download here</body></html>",
                 content_type="text/html")
    with pytest.raises(ImageError, match="web page"):
        await cache.ensure(server.url("/page"), "k")
    assert_nothing_cached(cache)


async def test_random_bytes_refused(cache: ImageCache, server: Server) -> None:
    server.serve("/junk", not_a_disk())
    with pytest.raises(ImageError, match="not a disk image"):
        await cache.ensure(server.url("/junk"), "k")
    assert_nothing_cached(cache)


async def test_unaligned_raw_refused(cache: ImageCache, server: Server) -> None:
    server.serve("/odd", make_raw_disk(MiB + 100))
    with pytest.raises(ImageError, match="not a disk image"):
        await cache.ensure(server.url("/odd"), "k")
    assert_nothing_cached(cache)


def host_secret(directory: Path) -> Path:
    """A file of the host an image will try to make QEMU read: in a
    directory of its own, watched for anything opening it."""
    directory.mkdir()
    secret = directory / "secret"
    secret.write_bytes(b"host secret".ljust(MiB, b"\0"))
    return secret


async def refused_without_opening(cache: ImageCache, server: Server, secret: Path,
                                  body: bytes, match: str) -> str:
    """Serve ``body``, have it refused, and prove nothing opened ``secret``
    and the message does not name it; return the message."""
    server.serve("/evil", body)
    with OpenWatch(secret.parent) as watch:
        with pytest.raises(ImageError, match=match) as caught:
            await cache.ensure(server.url("/evil"), "k")
        assert watch.opened() == [], "something opened the host file"
    assert str(secret.parent) not in caught.value.message
    assert "secret" not in caught.value.message
    assert_nothing_cached(cache)
    return caught.value.message


async def test_qcow2_with_backing_file_refused(cache: ImageCache, server: Server,
                                               tmp_path: Path) -> None:
    secret = host_secret(tmp_path / "host")
    overlay = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(overlay))
    await refused_without_opening(cache, server, secret, overlay.read_bytes(), "backing file")


async def test_qcow2_with_external_data_file_refused(cache: ImageCache, server: Server,
                                                     tmp_path: Path) -> None:
    secret = host_secret(tmp_path / "host")
    evil = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={secret},data_file_raw=on",
             str(evil), "1M")
    await refused_without_opening(cache, server, secret, evil.read_bytes(), "separate file")


@pytest.mark.parametrize("kind", ["monolithicFlat", "twoGbMaxExtentFlat", "vmfs"])
async def test_vmdk_descriptor_naming_a_host_file_is_refused_unopened(
        cache: ImageCache, server: Server, tmp_path: Path, kind: str) -> None:
    """A VMDK descriptor is text that names its data files by path: qemu-img
    left to guess would open /etc/shadow for it (CVE-2022-47951's class),
    and its "Could not open '...'" would tell which paths exist."""
    secret = host_secret(tmp_path / "host")
    descriptor = (
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        f'createType="{kind}"\n\n'
        f'RW 2048 FLAT "{secret}" 0\n'
        f'RW 2048 FLAT "{tmp_path / "host" / "missing"}" 0\n\n'
        'ddb.adapterType = "ide"\n'
    )
    message = await refused_without_opening(cache, server, secret, descriptor.encode(),
                                            "VMDK descriptor")
    assert "missing" not in message and "No such file" not in message


def _patched_vmdk(tmp_path: Path, change: Callable[[bytearray], None]) -> bytes:
    """A real monolithicSparse VMDK, with its header or embedded descriptor changed."""
    path = tmp_path / "base.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", str(path), "4M")
    data = bytearray(path.read_bytes())
    change(data)
    return bytes(data)


def _embedded_descriptor(data: bytearray) -> tuple[int, int]:
    sector, sectors = struct.unpack_from("<QQ", data, 28)
    return sector * 512, sectors * 512


async def test_vmdk_with_a_parent_is_refused_unopened(cache: ImageCache, server: Server,
                                                      tmp_path: Path) -> None:
    secret = host_secret(tmp_path / "host")

    def add_parent(data: bytearray) -> None:
        start, length = _embedded_descriptor(data)
        text = bytes(data[start:start + length]).split(b"\0", 1)[0]
        text = text.replace(b"parentCID=ffffffff",
                            b'parentCID=12345678\nparentFileNameHint="' + bytes(secret) + b'"')
        data[start:start + length] = text.ljust(length, b"\0")

    await refused_without_opening(cache, server, secret, _patched_vmdk(tmp_path, add_parent),
                                  "parent")


async def test_vmdk_deferring_to_its_embedded_descriptor_is_refused_unopened(
        cache: ImageCache, server: Server, tmp_path: Path) -> None:
    """Capacity 0 makes QEMU read the embedded descriptor as a descriptor
    file, whose extents may name any file."""
    secret = host_secret(tmp_path / "host")

    def point_elsewhere(data: bytearray) -> None:
        struct.pack_into("<Q", data, 12, 0)
        start, length = _embedded_descriptor(data)
        text = (f'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                f'createType="monolithicFlat"\nRW 2048 FLAT "{secret}" 0\n').encode()
        data[start:start + length] = text.ljust(length, b"\0")

    await refused_without_opening(cache, server, secret,
                                  _patched_vmdk(tmp_path, point_elsewhere), "embedded descriptor")


async def test_unsupported_formats_are_refused_by_their_header(
        cache: ImageCache, server: Server, tmp_path: Path) -> None:
    path = tmp_path / "x.qed"
    qemu_img("create", "-q", "-f", "qed", str(path), "1M")
    server.serve("/x.qed", path.read_bytes())
    with pytest.raises(ImageError, match="QED images are not supported"):
        await cache.ensure(server.url("/x.qed"), "k")
    assert_nothing_cached(cache)


async def test_qemu_img_failures_name_no_host_path(cache: ImageCache, server: Server,
                                                   tmp_path: Path) -> None:
    """A qcow2 header that passes the format check but that qemu-img can't
    read: the user gets a generic reason; qemu-img's words (with our private
    paths in them) stay in the agent's log."""
    broken = bytearray(make_qcow2(tmp_path))
    struct.pack_into(">I", broken, 20, 40)  # a cluster size qemu-img refuses
    server.serve("/broken.qcow2", bytes(broken))
    with pytest.raises(ImageError) as caught:
        await cache.ensure(server.url("/broken.qcow2"), "k")
    assert caught.value.message == "the file is not a usable qcow2 image"
    assert_nothing_cached(cache)


async def test_truncated_body(cache: ImageCache) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 4000)
        await writer.drain()

    async with RawServer(respond) as raw:
        with pytest.raises(ImageError, match="cut short"):
            await cache.ensure(raw.url(), "k")
    assert_nothing_cached(cache)


async def test_checksum(cache: ImageCache, server: Server, tmp_path: Path) -> None:
    body = make_qcow2(tmp_path)
    server.serve("/img.qcow2", body)
    with pytest.raises(ImageError, match="not the expected " + "0" * 64):
        await cache.ensure(server.url("/img.qcow2"), "k", expected_sha256="0" * 64)
    assert_nothing_cached(cache)
    with pytest.raises(ImageError, match="not a sha256"):
        await cache.ensure(server.url("/img.qcow2"), "k", expected_sha256="abc")
    right = hashlib.sha256(body).hexdigest()
    image = await cache.ensure(server.url("/img.qcow2"), "k", expected_sha256=right.upper())
    assert image.sha256 == right
    with pytest.raises(ImageError, match="cached copy"):
        await cache.ensure(server.url("/img.qcow2"), "k", expected_sha256="1" * 64)


async def test_size_limit_declared(server: Server, tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache", LOOPBACK, max_bytes=MiB)
    server.serve("/big", make_raw_disk(2 * MiB))
    with pytest.raises(ImageError, match="limit of 1048576 bytes"):
        await cache.ensure(server.url("/big"), "k")
    assert_nothing_cached(cache)


async def test_size_limit_while_streaming(server: Server, tmp_path: Path) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"\x01" * (256 * 1024))
        return response
    server.routes["/big"] = chunked
    cache = ImageCache(tmp_path / "cache", LOOPBACK, max_bytes=MiB)
    with pytest.raises(ImageError, match="larger than this node's limit"):
        await cache.ensure(server.url("/big"), "k")
    assert_nothing_cached(cache)


async def test_size_limit_after_conversion(server: Server, tmp_path: Path) -> None:
    # Incompressible data grows a little as qcow2; a compressed VMDK could
    # grow a lot. Either way the converted file may not pass the limit.
    body = make_raw_disk(4 * MiB)
    server.serve("/disk", body)
    cache = ImageCache(tmp_path / "cache", LOOPBACK, max_bytes=len(body))
    with pytest.raises(ImageError, match="once converted"):
        await cache.ensure(server.url("/disk"), "k")
    assert_nothing_cached(cache)


async def test_stalled_server_times_out(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(30)

    cache = ImageCache(tmp_path / "cache", LOOPBACK, idle_timeout=0.5)
    async with RawServer(respond) as raw:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ImageError, match="stopped sending data for 0.5 seconds"):
            await cache.ensure(raw.url(), "k")
        assert loop.time() - started < 5
    assert_nothing_cached(cache)


async def test_server_that_never_answers_times_out(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    cache = ImageCache(tmp_path / "cache", LOOPBACK, idle_timeout=0.5)
    async with RawServer(respond) as raw:
        with pytest.raises(ImageError, match="stopped sending data"):
            await cache.ensure(raw.url(), "k")


async def test_dripping_server_gives_up(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):
            writer.write(b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.05)

    cache = ImageCache(tmp_path / "cache", LOOPBACK, idle_timeout=0.5, min_rate=1000)
    async with RawServer(respond) as raw:
        with pytest.raises(ImageError, match="too slowly"):
            await cache.ensure(raw.url(), "k")
    assert_nothing_cached(cache)


# --- redirects and where connections go --------------------------------------


async def test_redirects_are_followed(cache: ImageCache, server: Server,
                                      tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    server.redirect("/a", "/b", status=301)
    server.redirect("/b", server.url("/c"), status=307)
    server.redirect("/c", "img.qcow2", status=308)
    image = await cache.ensure(server.url("/a"), "k")
    assert image.format == "qcow2"
    assert json.loads(image.path.with_suffix(".json").read_text())["url"] == server.url("/a")


async def test_too_many_redirects(cache: ImageCache, server: Server) -> None:
    for n in range(10):
        server.redirect(f"/r{n}", f"/r{n + 1}")
    with pytest.raises(ImageError, match="more than 5 redirects"):
        await cache.ensure(server.url("/r0"), "k")
    assert server.hits["/r5"] == 1 and server.hits["/r6"] == 0
    assert_nothing_cached(cache)


@pytest.mark.parametrize("location", [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
])
async def test_redirect_to_metadata_refused(cache: ImageCache, server: Server,
                                            location: str) -> None:
    server.redirect("/img", location)
    with pytest.raises(ImageError, match="169.254.169.254.*metadata"):
        await cache.ensure(server.url("/img"), "k")
    assert_nothing_cached(cache)


async def test_redirect_to_file_refused_even_when_files_are_allowed(
        cache: ImageCache, server: Server) -> None:
    server.redirect("/img", "file:///etc/hostname")
    with pytest.raises(ImageError, match="file://"):
        await cache.ensure(server.url("/img"), "k",
                           policy=FetchPolicy(LOOPBACK.allowed_networks, allow_file=True))
    assert_nothing_cached(cache)


async def test_redirect_chain_ending_on_loopback_refused(server: Server, tmp_path: Path) -> None:
    # The first server is on 127.0.0.2, the only address this policy allows;
    # after two hops it sends us to the loopback server on 127.0.0.1.
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    front = Server("127.0.0.2")
    await front.start()
    try:
        front.redirect("/a", "/b")
        front.redirect("/b", server.url("/img.qcow2"))
        policy = FetchPolicy(allowed_networks=[ipaddress.ip_network("127.0.0.2/32")])
        cache = ImageCache(tmp_path / "cache", policy)
        with pytest.raises(ImageError, match="127.0.0.1: it is a loopback address") as caught:
            await cache.ensure(front.url("/a"), "k")
        assert caught.value.message.startswith(
            f"127.0.0.2 redirected to {server.url('/img.qcow2')}, but refusing")
        assert front.hits["/b"] == 1
        assert server.hits["/img.qcow2"] == 0
        assert_nothing_cached(cache)
    finally:
        await front.stop()


async def test_connects_only_to_the_checked_address(
        cache: ImageCache, server: Server, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the name first resolves to the (allowed) test server,
    # then to the metadata service. The download must use the first answer
    # and never ask again.
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    answers = [[ipaddress.ip_address("127.0.0.1")], [ipaddress.ip_address("169.254.169.254")]]
    lookups: list[str] = []

    async def rebinding_resolver(host: str, port: int) -> list[urlguard.IPAddress]:
        lookups.append(host)
        return answers[min(len(lookups), 2) - 1]

    monkeypatch.setattr(urlguard, "_resolve", rebinding_resolver)
    image = await cache.ensure(f"http://images.example:{server.port}/img.qcow2", "k")
    assert image.format == "qcow2"
    assert lookups == ["images.example"]
    assert server.hits["/img.qcow2"] == 1


async def test_pinned_resolver_answers_only_for_its_host() -> None:
    resolver = fetch._PinnedResolver("a.example", [ipaddress.ip_address("127.0.0.1")])
    assert [r["host"] for r in await resolver.resolve("a.example", 80)] == ["127.0.0.1"]
    with pytest.raises(OSError):
        await resolver.resolve("b.example", 80)


async def test_userinfo_refused(cache: ImageCache, server: Server) -> None:
    with pytest.raises(ImageError, match="user name or password"):
        await cache.ensure(f"http://good@127.0.0.1:{server.port}/img", "k")
    assert sum(server.hits.values()) == 0


# --- overlays ----------------------------------------------------------------


async def cached_base(cache: ImageCache, server: Server, tmp_path: Path,
                      size: str = "16M") -> CachedImage:
    server.serve("/base.qcow2", make_qcow2(tmp_path, size=size, name="base.qcow2"))
    return await cache.ensure(server.url("/base.qcow2"), f"base-{size}")


async def test_overlay_on_cached_image(cache: ImageCache, server: Server,
                                       tmp_path: Path) -> None:
    base = await cached_base(cache, server, tmp_path)
    disks = tmp_path / "instance"
    disks.mkdir()
    dest = disks / "vda.qcow2"
    await create_overlay(base, dest, 2)
    chain = json.loads(qemu_img("info", "--output=json", "--backing-chain", str(dest)))
    assert chain[0]["format"] == "qcow2"
    assert chain[0]["virtual-size"] == 2 * GiB
    assert chain[0]["backing-filename"] == str(base.path.resolve())
    assert chain[0]["backing-filename-format"] == "qcow2"
    assert chain[1]["filename"] == str(base.path.resolve())
    assert "backing-filename" not in chain[1]
    assert list(disks.iterdir()) == [dest]


async def test_overlay_too_small_refused(cache: ImageCache, server: Server,
                                         tmp_path: Path) -> None:
    base = await cached_base(cache, server, tmp_path, size="3G")
    dest = tmp_path / "vda.qcow2"
    with pytest.raises(ImageError, match=r"a 2 GB disk .* which is 3 GB"):
        await create_overlay(base, dest, 2)
    assert not dest.exists()
    await create_overlay(base, dest, 3)
    assert info(dest)["virtual-size"] == 3 * GiB


async def test_blank_disk(tmp_path: Path) -> None:
    dest = tmp_path / "vdb.qcow2"
    await create_overlay(None, dest, 5)
    details = info(dest)
    assert details["format"] == "qcow2"
    assert details["virtual-size"] == 5 * GiB
    assert "backing-filename" not in details
    assert list(tmp_path.iterdir()) == [dest]


async def test_zero_sized_disk_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="at least 1 GB"):
        await create_overlay(None, tmp_path / "vdb.qcow2", 0)
    assert list(tmp_path.iterdir()) == []


async def test_overlay_never_replaces_a_disk(tmp_path: Path) -> None:
    dest = tmp_path / "vda.qcow2"
    await create_overlay(None, dest, 1)
    before = dest.read_bytes()
    with pytest.raises(FileExistsError):
        await create_overlay(None, dest, 2)
    assert dest.read_bytes() == before
    assert list(tmp_path.iterdir()) == [dest]


async def test_overlay_failure_leaves_nothing(tmp_path: Path) -> None:
    missing = CachedImage(path=tmp_path / "gone.qcow2", format="qcow2", virtual_size=MiB,
                          size=1, sha256="0" * 64)
    dest = tmp_path / "vda.qcow2"
    with pytest.raises(ImageError, match="creating the disk failed"):
        await create_overlay(missing, dest, 1)
    assert list(tmp_path.iterdir()) == []
