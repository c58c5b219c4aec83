"""A node's blobs and the disk images made from them, against real qemu-img
and HTTP servers on loopback: fetching (any bytes at all, within limits,
only from where the URL guard allows, redirects checked hop by hop), and
making a standalone qcow2 of what was fetched (only of real disk images,
never one that would read other host files).

Every server here is one the test starts on 127.0.0.x; nothing else is
contacted. Test images are made with qemu-img in tmp directories.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import random
import struct
import subprocess
import uuid as uuidlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cloudstate import urlguard
from cloudstate.urlguard import FetchPolicy
from nodeagent.images import fetch
from nodeagent.images.blobs import BlobStore, StoredBlob
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


def uid(key: str) -> str:
    """A blob's UUID for a test's short name."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, key))


@dataclass
class Images:
    """A node's blob store and image cache, as the agent has them."""

    blobs: BlobStore
    cache: ImageCache

    async def fetch(self, url: str, key: str = "k", **options: Any) -> StoredBlob:
        return await self.blobs.fetch(uid(key), url, **options)

    async def image(self, url: str, key: str = "k", **options: Any) -> CachedImage:
        return await self.cache.ensure(await self.fetch(url, key, **options))


def make_images(root: Path, policy: FetchPolicy = LOOPBACK, *, max_bytes: int = 64 * GiB,
                **timeouts: Any) -> Images:
    # Files under <root>/src may be registered as images (file:// blobs).
    return Images(BlobStore(root / "blobs", policy, max_bytes=max_bytes,
                            file_dirs=(root / "src",), **timeouts),
                  ImageCache(root / "images", max_bytes=max_bytes))


@pytest.fixture
def images(tmp_path: Path) -> Images:
    return make_images(tmp_path, connect_timeout=2, idle_timeout=2)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_nothing_fetched(images: Images) -> None:
    assert files_under(images.blobs.root) == []
    assert files_under(images.cache.root) == []


def assert_no_image(images: Images, key: str = "k") -> None:
    """Fetched (any bytes are a blob), but no disk image made of them."""
    assert images.blobs.lookup(uid(key)) is not None
    assert files_under(images.cache.root) == []


# --- fetching blobs and making images --------------------------------------


async def test_qcow2_is_fetched_and_linked(images: Images, server: Server,
                                           tmp_path: Path) -> None:
    body = make_qcow2(tmp_path)
    server.serve("/img.qcow2", body)
    seen: list[tuple[int, int | None]] = []
    blob = await images.fetch(server.url("/img.qcow2"), "k1",
                              on_progress=lambda d, t: seen.append((d, t)))
    assert blob.sha512 == hashlib.sha512(body).hexdigest()
    assert blob.size == len(body) and blob.path.read_bytes() == body
    assert blob.format == "qcow2" and blob.virtual_size == 16 * MiB
    assert seen[-1] == (len(body), len(body))
    assert images.blobs.lookup(uid("k1")) == blob
    image = await images.cache.ensure(blob)
    assert image.format == "qcow2" and image.source_format == "qcow2"
    assert image.virtual_size == 16 * MiB
    assert image.path == images.cache.image_path(uid("k1"))
    # Already a standalone qcow2: the image is the blob's own bytes, linked.
    assert os.stat(image.path).st_ino == os.stat(blob.path).st_ino
    assert images.cache.lookup(uid("k1")) == image
    sidecar = json.loads(image.path.with_suffix(".json").read_text())
    assert sidecar["virtual_size"] == 16 * MiB and sidecar["source_format"] == "qcow2"
    assert files_under(images.cache.root) == sorted([image.path, image.path.with_suffix(".json")])


async def test_raw_disk_is_converted(images: Images, server: Server) -> None:
    body = make_raw_disk()
    server.serve("/disk.img", body)
    image = await images.image(server.url("/disk.img"), "raw")
    details = info(image.path)
    assert details["format"] == "qcow2"
    assert details["virtual-size"] == len(body) == image.virtual_size
    assert "backing-filename" not in details
    # The blob keeps the bytes as sent; the guest sees the same bytes.
    assert images.blobs.lookup(uid("raw")).path.read_bytes() == body  # type: ignore[union-attr]
    out = image.path.parent / "check.raw"
    qemu_img("convert", "-f", "qcow2", "-O", "raw", str(image.path), str(out))
    assert out.read_bytes() == body


async def test_iso_is_accepted(images: Images, server: Server) -> None:
    body = bytearray(64 * 2048)
    body[0x8001:0x8006] = b"CD001"
    server.serve("/x.iso", bytes(body))
    image = await images.image(server.url("/x.iso"), "iso")
    assert image.virtual_size == len(body)


async def test_vmdk_is_converted(images: Images, server: Server, tmp_path: Path) -> None:
    raw = tmp_path / "src.raw"
    raw.write_bytes(make_raw_disk(MiB))
    vmdk = tmp_path / "src.vmdk"
    qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized",
             str(raw), str(vmdk))
    server.serve("/x.vmdk", vmdk.read_bytes())
    image = await images.image(server.url("/x.vmdk"), "vmdk")
    assert info(image.path)["format"] == "qcow2"
    assert image.source_format == "vmdk"


async def test_any_file_is_a_blob(images: Images, server: Server) -> None:
    """As in Shaken Fist: a text file is fetched like anything else; it is
    only refused when a disk is to be made from it."""
    server.serve("/notes.txt", b"37 bytes of text, and no disk at all\n", "text/plain")
    server.serve("/page", b"<html><body>Download here</body></html>", "text/html")
    for path, key in (("/notes.txt", "text"), ("/page", "page")):
        blob = await images.fetch(server.url(path), key)
        assert blob.size == len(blob.path.read_bytes()) and blob.format == "raw"
        with pytest.raises(ImageError, match="not a disk image"):
            await images.cache.ensure(blob)
    assert files_under(images.cache.root) == []


async def test_concurrent_callers_share_one_download_and_conversion(
        images: Images, server: Server) -> None:
    server.serve("/disk.img", make_raw_disk(), delay=0.3)
    progress: Counter[str] = Counter()
    blobs = await asyncio.gather(*(
        images.fetch(server.url("/disk.img"), "shared",
                     on_progress=lambda d, t, n=n: progress.update([n]))
        for n in ("a", "b", "c")))
    assert server.hits["/disk.img"] == 1
    assert blobs[0] == blobs[1] == blobs[2]
    assert set(progress) == {"a", "b", "c"}
    made = await asyncio.gather(*(images.cache.ensure(blobs[0]) for _ in range(3)))
    assert made[0] == made[1] == made[2]


async def test_a_blob_held_needs_no_network(images: Images, server: Server,
                                            tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    first = await images.fetch(server.url("/img.qcow2"))
    again = await images.fetch(server.url("/img.qcow2"))
    # A restarted agent finds it too, even if the server is gone.
    await server.stop()
    restarted = make_images(tmp_path)
    restarted.blobs.cleanup_partials()
    restarted.cache.cleanup_partials()
    third = await restarted.fetch("http://127.0.0.1:1/gone")
    assert first == again == third
    assert server.hits["/img.qcow2"] == 1


async def test_concurrent_callers_share_a_failure_and_may_retry(
        images: Images, server: Server, tmp_path: Path) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        raise web.HTTPServiceUnavailable()
    server.routes["/img.qcow2"] = broken
    outcomes = await asyncio.gather(images.fetch(server.url("/img.qcow2")),
                                    images.fetch(server.url("/img.qcow2")),
                                    return_exceptions=True)
    assert server.hits["/img.qcow2"] == 1
    for outcome in outcomes:
        assert isinstance(outcome, ImageError)
        assert "503" in outcome.message
    server.serve("/img.qcow2", make_qcow2(tmp_path))
    assert (await images.fetch(server.url("/img.qcow2"))).format == "qcow2"
    assert server.hits["/img.qcow2"] == 2


async def test_a_waiter_giving_up_does_not_cancel_the_download(
        images: Images, server: Server, tmp_path: Path) -> None:
    server.serve("/img.qcow2", make_qcow2(tmp_path), delay=0.3)
    impatient = asyncio.create_task(images.fetch(server.url("/img.qcow2")))
    patient = asyncio.create_task(images.fetch(server.url("/img.qcow2")))
    await asyncio.sleep(0.1)
    impatient.cancel()
    assert (await patient).format == "qcow2"
    assert server.hits["/img.qcow2"] == 1


async def test_file_url_when_allowed(images: Images, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    body = make_qcow2(tmp_path / "src", name="a b.qcow2")
    url = f"file://{tmp_path}/src/a%20b.qcow2"
    with pytest.raises(ImageError, match="file://"):
        await images.fetch(url, "f")
    blob = await images.fetch(url, "f", policy=FetchPolicy(allow_file=True))
    assert blob.sha512 == hashlib.sha512(body).hexdigest()
    assert files_under(images.blobs.root / ".partial") == []


async def test_a_file_outside_the_registered_directories_is_never_read(
        images: Images, tmp_path: Path) -> None:
    """etcd names the file; a planted record must not make the root agent copy
    a host file into a blob that other nodes and the portal would serve."""
    allow = FetchPolicy(allow_file=True)
    (tmp_path / "src").mkdir()
    make_qcow2(tmp_path, name="outside.qcow2")
    (tmp_path / "src" / "link.qcow2").symlink_to(tmp_path / "outside.qcow2")
    for url in (f"file://{tmp_path}/outside.qcow2", f"file://{tmp_path}/src/link.qcow2",
                f"file://{tmp_path}/src/../outside.qcow2", "file:///etc/shadow"):
        with pytest.raises(ImageError, match="outside the directories"):
            await images.fetch(url, "f", policy=allow)
    assert_nothing_fetched(images)


async def test_unreadable_file_url(images: Images, tmp_path: Path) -> None:
    allow = FetchPolicy(allow_file=True)
    with pytest.raises(ImageError, match="could not be read"):
        await images.fetch(f"file://{tmp_path}/src/missing.qcow2", "f", policy=allow)
    with pytest.raises(ImageError, match="must be local"):
        await images.fetch(f"file://elsewhere{tmp_path}/x.qcow2", "f", policy=allow)
    assert_nothing_fetched(images)


async def test_close_cancels_downloads(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(30)

    images = make_images(tmp_path)
    async with RawServer(respond) as raw:
        waiting = asyncio.create_task(images.fetch(raw.url()))
        await asyncio.sleep(0.3)
        await images.blobs.close()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert_nothing_fetched(images)


async def test_remove_and_cleanup(images: Images, server: Server) -> None:
    server.serve("/disk.img", make_raw_disk())
    image = await images.image(server.url("/disk.img"))
    blob = images.blobs.lookup(uid("k"))
    assert blob is not None
    images.cache.remove(uid("k"))
    images.blobs.remove(uid("k"))
    assert images.cache.lookup(uid("k")) is None and images.blobs.lookup(uid("k")) is None
    assert_nothing_fetched(images)
    # Left-overs of a crash: partial work, and files whose sidecar was never written.
    (images.blobs.root / ".partial" / "x").write_bytes(b"half")
    (images.cache.root / ".partial").mkdir(exist_ok=True)
    (images.cache.root / ".partial" / "y.qcow2").write_bytes(b"half")
    image.path.write_bytes(b"orphan")
    blob.path.write_bytes(b"orphan")
    images.blobs.cleanup_partials()
    images.cache.cleanup_partials()
    assert_nothing_fetched(images)
    assert (images.blobs.root / ".partial").is_dir()


# --- refusals: nothing may be left behind ------------------------------------


async def test_404(images: Images, server: Server) -> None:
    with pytest.raises(ImageError, match="404 Not Found") as caught:
        await images.fetch(server.url("/missing.qcow2"))
    assert "127.0.0.1" in caught.value.message
    assert_nothing_fetched(images)


async def test_random_bytes_make_no_disk(images: Images, server: Server) -> None:
    server.serve("/junk", not_a_disk())
    with pytest.raises(ImageError, match="not a disk image"):
        await images.image(server.url("/junk"))
    assert_no_image(images)


async def test_unaligned_raw_makes_no_disk(images: Images, server: Server) -> None:
    server.serve("/odd", make_raw_disk(MiB + 100))
    with pytest.raises(ImageError, match="not a disk image"):
        await images.image(server.url("/odd"))
    assert_no_image(images)


def host_secret(directory: Path) -> Path:
    """A file of the host an image will try to make QEMU read: in a
    directory of its own, watched for anything opening it."""
    directory.mkdir()
    secret = directory / "secret"
    secret.write_bytes(b"host secret".ljust(MiB, b"\0"))
    return secret


async def refused_without_opening(images: Images, server: Server, secret: Path,
                                  body: bytes, match: str) -> str:
    """Serve ``body``: it is fetched (any bytes are a blob) but no disk is
    made of it; prove nothing opened ``secret``, while fetching (the blob's
    inspection) or after, and the message does not name it; return the
    message."""
    server.serve("/evil", body)
    with OpenWatch(secret.parent) as watch:
        with pytest.raises(ImageError, match=match) as caught:
            await images.image(server.url("/evil"))
        assert watch.opened() == [], "something opened the host file"
    assert str(secret.parent) not in caught.value.message
    assert "secret" not in caught.value.message
    assert_no_image(images)
    return caught.value.message


async def test_qcow2_with_backing_file_makes_no_disk(images: Images, server: Server,
                                                     tmp_path: Path) -> None:
    secret = host_secret(tmp_path / "host")
    overlay = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(overlay))
    await refused_without_opening(images, server, secret, overlay.read_bytes(), "backing file")


async def test_qcow2_with_external_data_file_makes_no_disk(images: Images, server: Server,
                                                           tmp_path: Path) -> None:
    secret = host_secret(tmp_path / "host")
    evil = tmp_path / "evil.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={secret},data_file_raw=on",
             str(evil), "1M")
    await refused_without_opening(images, server, secret, evil.read_bytes(), "separate file")


@pytest.mark.parametrize("kind", ["monolithicFlat", "twoGbMaxExtentFlat", "vmfs"])
async def test_vmdk_descriptor_naming_a_host_file_makes_no_disk_unopened(
        images: Images, server: Server, tmp_path: Path, kind: str) -> None:
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
    message = await refused_without_opening(images, server, secret, descriptor.encode(),
                                            "VMDK descriptor")
    assert "missing" not in message and "No such file" not in message
    # The blob's view says nothing of a format qemu-img never read.
    assert images.blobs.lookup(uid("k")).format is None  # type: ignore[union-attr]


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


async def test_vmdk_with_a_parent_makes_no_disk_unopened(images: Images, server: Server,
                                                         tmp_path: Path) -> None:
    secret = host_secret(tmp_path / "host")

    def add_parent(data: bytearray) -> None:
        start, length = _embedded_descriptor(data)
        text = bytes(data[start:start + length]).split(b"\0", 1)[0]
        text = text.replace(b"parentCID=ffffffff",
                            b'parentCID=12345678\nparentFileNameHint="' + bytes(secret) + b'"')
        data[start:start + length] = text.ljust(length, b"\0")

    await refused_without_opening(images, server, secret, _patched_vmdk(tmp_path, add_parent),
                                  "parent")


async def test_vmdk_deferring_to_its_embedded_descriptor_makes_no_disk_unopened(
        images: Images, server: Server, tmp_path: Path) -> None:
    """Capacity 0 makes QEMU read the embedded descriptor as a descriptor
    file, whose extents may name any file."""
    secret = host_secret(tmp_path / "host")

    def point_elsewhere(data: bytearray) -> None:
        struct.pack_into("<Q", data, 12, 0)
        start, length = _embedded_descriptor(data)
        text = (f'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                f'createType="monolithicFlat"\nRW 2048 FLAT "{secret}" 0\n').encode()
        data[start:start + length] = text.ljust(length, b"\0")

    await refused_without_opening(images, server, secret,
                                  _patched_vmdk(tmp_path, point_elsewhere), "embedded descriptor")


async def test_unsupported_formats_are_refused_by_their_header(
        images: Images, server: Server, tmp_path: Path) -> None:
    path = tmp_path / "x.qed"
    qemu_img("create", "-q", "-f", "qed", str(path), "1M")
    server.serve("/x.qed", path.read_bytes())
    with pytest.raises(ImageError, match="QED images are not supported"):
        await images.image(server.url("/x.qed"))
    assert_no_image(images)


async def test_qemu_img_failures_name_no_host_path(images: Images, server: Server,
                                                   tmp_path: Path) -> None:
    """A qcow2 header that passes the format check but that qemu-img can't
    read: the user gets a generic reason; qemu-img's words (with our private
    paths in them) stay in the agent's log."""
    broken = bytearray(make_qcow2(tmp_path))
    struct.pack_into(">I", broken, 20, 40)  # a cluster size qemu-img refuses
    server.serve("/broken.qcow2", bytes(broken))
    with pytest.raises(ImageError) as caught:
        await images.image(server.url("/broken.qcow2"))
    assert caught.value.message == "the file is not a usable qcow2 image"
    assert_no_image(images)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_blobs_stay_the_agents_and_unchanged_by_the_sandbox(
        images: Images, server: Server, tmp_path: Path) -> None:
    """qemu-img reads blobs as the unprivileged user, which may read what
    it is lent but never change it: the bytes, their owner and mode are as
    they were, and the image made of a qcow2 blob is that very file."""
    body = make_qcow2(tmp_path)
    server.serve("/img.qcow2", body)
    blob = await images.fetch(server.url("/img.qcow2"))
    image = await images.cache.ensure(blob)
    details = os.stat(blob.path)
    assert (details.st_uid, details.st_gid, details.st_mode & 0o777) == (0, 0, 0o600)
    assert blob.path.read_bytes() == body
    assert hashlib.sha512(body).hexdigest() == blob.sha512
    assert os.stat(image.path).st_ino == details.st_ino
    assert files_under(images.blobs.root / ".partial") == []
    assert files_under(images.cache.root / ".partial") == []


async def test_truncated_body(images: Images) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\n" + b"x" * 4000)
        await writer.drain()

    async with RawServer(respond) as raw:
        with pytest.raises(ImageError, match="cut short"):
            await images.fetch(raw.url())
    assert_nothing_fetched(images)


async def test_checksum(images: Images, server: Server, tmp_path: Path) -> None:
    body = make_qcow2(tmp_path)
    server.serve("/img.qcow2", body)
    with pytest.raises(ImageError, match="not the expected " + "0" * 128):
        await images.fetch(server.url("/img.qcow2"), expected_sha512="0" * 128)
    assert_nothing_fetched(images)
    with pytest.raises(ImageError, match="not a sha512"):
        await images.fetch(server.url("/img.qcow2"), expected_sha512="abc")
    right = hashlib.sha512(body).hexdigest()
    blob = await images.fetch(server.url("/img.qcow2"), expected_sha512=right.upper())
    assert blob.sha512 == right
    with pytest.raises(ImageError, match="not the expected"):
        await images.fetch(server.url("/img.qcow2"), expected_sha512="1" * 128)


async def test_size_limit_declared(server: Server, tmp_path: Path) -> None:
    images = make_images(tmp_path, max_bytes=MiB)
    server.serve("/big", make_raw_disk(2 * MiB))
    with pytest.raises(ImageError, match="limit of 1048576 bytes"):
        await images.fetch(server.url("/big"))
    assert_nothing_fetched(images)


async def test_size_limit_while_streaming(server: Server, tmp_path: Path) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"\x01" * (256 * 1024))
        return response
    server.routes["/big"] = chunked
    images = make_images(tmp_path, max_bytes=MiB)
    with pytest.raises(ImageError, match="larger than this node's limit"):
        await images.fetch(server.url("/big"))
    assert_nothing_fetched(images)


async def test_size_limit_after_conversion(server: Server, tmp_path: Path) -> None:
    # Incompressible data grows a little as qcow2; a compressed VMDK could
    # grow a lot. Either way the converted file may not pass the limit.
    body = make_raw_disk(4 * MiB)
    server.serve("/disk", body)
    images = make_images(tmp_path, max_bytes=len(body))
    with pytest.raises(ImageError, match="once converted"):
        await images.image(server.url("/disk"))
    assert_no_image(images)


async def test_stalled_server_times_out(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(30)

    images = make_images(tmp_path, idle_timeout=0.5)
    async with RawServer(respond) as raw:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ImageError, match="stopped sending data for 0.5 seconds"):
            await images.fetch(raw.url())
        assert loop.time() - started < 5
    assert_nothing_fetched(images)


async def test_server_that_never_answers_times_out(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    images = make_images(tmp_path, idle_timeout=0.5)
    async with RawServer(respond) as raw:
        with pytest.raises(ImageError, match="stopped sending data"):
            await images.fetch(raw.url())


async def test_dripping_server_gives_up(tmp_path: Path) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(200):
            writer.write(b"x" * 10)
            await writer.drain()
            await asyncio.sleep(0.05)

    images = make_images(tmp_path, idle_timeout=0.5, min_rate=1000)
    async with RawServer(respond) as raw:
        with pytest.raises(ImageError, match="too slowly"):
            await images.fetch(raw.url())
    assert_nothing_fetched(images)


# --- redirects and where connections go --------------------------------------


async def test_redirects_are_followed(images: Images, server: Server,
                                      tmp_path: Path) -> None:
    body = make_qcow2(tmp_path)
    server.serve("/img.qcow2", body)
    server.redirect("/a", "/b", status=301)
    server.redirect("/b", server.url("/c"), status=307)
    server.redirect("/c", "img.qcow2", status=308)
    blob = await images.fetch(server.url("/a"))
    assert blob.path.read_bytes() == body


async def test_too_many_redirects(images: Images, server: Server) -> None:
    for n in range(10):
        server.redirect(f"/r{n}", f"/r{n + 1}")
    with pytest.raises(ImageError, match="more than 5 redirects"):
        await images.fetch(server.url("/r0"))
    assert server.hits["/r5"] == 1 and server.hits["/r6"] == 0
    assert_nothing_fetched(images)


@pytest.mark.parametrize("location", [
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
])
async def test_redirect_to_metadata_refused(images: Images, server: Server,
                                            location: str) -> None:
    server.redirect("/img", location)
    with pytest.raises(ImageError, match="169.254.169.254.*metadata"):
        await images.fetch(server.url("/img"))
    assert_nothing_fetched(images)


async def test_redirect_to_file_refused_even_when_files_are_allowed(
        images: Images, server: Server) -> None:
    server.redirect("/img", "file:///etc/hostname")
    with pytest.raises(ImageError, match="file://"):
        await images.fetch(server.url("/img"),
                           policy=FetchPolicy(LOOPBACK.allowed_networks, allow_file=True))
    assert_nothing_fetched(images)


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
        images = make_images(tmp_path, policy)
        with pytest.raises(ImageError, match="127.0.0.1: it is a loopback address") as caught:
            await images.fetch(front.url("/a"))
        assert caught.value.message.startswith(
            f"127.0.0.2 redirected to {server.url('/img.qcow2')}, but refusing")
        assert front.hits["/b"] == 1
        assert server.hits["/img.qcow2"] == 0
        assert_nothing_fetched(images)
    finally:
        await front.stop()


async def test_connects_only_to_the_checked_address(
        images: Images, server: Server, tmp_path: Path,
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
    blob = await images.fetch(f"http://images.example:{server.port}/img.qcow2")
    assert blob.format == "qcow2"
    assert lookups == ["images.example"]
    assert server.hits["/img.qcow2"] == 1


async def test_pinned_resolver_answers_only_for_its_host() -> None:
    resolver = fetch._PinnedResolver("a.example", [ipaddress.ip_address("127.0.0.1")])
    assert [r["host"] for r in await resolver.resolve("a.example", 80)] == ["127.0.0.1"]
    with pytest.raises(OSError):
        await resolver.resolve("b.example", 80)


async def test_userinfo_refused(images: Images, server: Server) -> None:
    with pytest.raises(ImageError, match="user name or password"):
        await images.fetch(f"http://good@127.0.0.1:{server.port}/img")
    assert sum(server.hits.values()) == 0


# --- overlays ----------------------------------------------------------------


async def cached_base(images: Images, server: Server, tmp_path: Path,
                      size: str = "16M") -> CachedImage:
    server.serve("/base.qcow2", make_qcow2(tmp_path, size=size, name="base.qcow2"))
    return await images.image(server.url("/base.qcow2"), f"base-{size}")


async def test_overlay_on_cached_image(images: Images, server: Server,
                                       tmp_path: Path) -> None:
    base = await cached_base(images, server, tmp_path)
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


async def test_overlay_too_small_refused(images: Images, server: Server,
                                         tmp_path: Path) -> None:
    base = await cached_base(images, server, tmp_path, size="3G")
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
    missing = CachedImage(path=tmp_path / "gone.qcow2", virtual_size=MiB, source_format="qcow2")
    dest = tmp_path / "vda.qcow2"
    with pytest.raises(ImageError, match="creating the disk failed"):
        await create_overlay(missing, dest, 1)
    assert list(tmp_path.iterdir()) == []
