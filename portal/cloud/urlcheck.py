"""Image URLs checked by the portal before anything is written.

The node agents check every URL again when they fetch (and every redirect);
checking here as well lets the person who typed it hear at once, with a 400
naming the reason, rather than find an error on the image later. Which
networks may be fetched from beyond the public internet is the same setting
the agents use, SFCLOUD_FETCH_ALLOW.

``probe`` reads the first bytes of what the URL serves, so "that is a web
page, not an image" is also said at once. It connects only to the checked
addresses and checks each redirect, exactly as a download does.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from cloudstate.pinned import PinnedResolver
from cloudstate.urlguard import FetchPolicy, IPAddress, URLRefused, check_url
from cloudstate.validation import shown
from portal.cloud.errors import BadRequest

PROBE_BYTES = 64 * 1024
PROBE_TIMEOUT = 20.0
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# What the first bytes of a disk image look like, per format qemu-img takes.
_MAGIC_AT_START = (
    (b"QFI\xfb", "qcow2"),
    (b"KDMV", "vmdk"),
    (b"vhdxfile", "vhdx"),
    (b"conectix", "vhd"),
)
_COMPRESSED = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
)


def policy() -> FetchPolicy:
    return FetchPolicy.from_env()


async def check(url: str, field: str = "url") -> list[IPAddress]:
    """The addresses ``url`` may be fetched from, or a 400 saying why not."""
    try:
        return await check_url(url, policy())
    except URLRefused as exc:
        raise BadRequest(f"{field}: {exc.message}") from exc


def recognise(head: bytes) -> str | None:
    """The image format these first bytes begin, or None."""
    for magic, name in _MAGIC_AT_START:
        if head.startswith(magic):
            return name
    if head.startswith(b"<<< ") and len(head) >= 0x44 and head[0x40:0x44] == b"\x7f\x10\xda\xbe":
        return "vdi"
    if len(head) > 0x8006 and head[0x8001:0x8006] == b"CD001":
        return "iso"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return "raw"
    return None


def why_not_an_image(head: bytes, content_type: str) -> str | None:
    if content_type in ("text/html", "application/xhtml+xml"):
        return "it is a web page, not a disk image; give the URL of the image file itself"
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            return (f"it is a {name}-compressed file; give the URL of an uncompressed "
                    "image (qcow2 or raw)")
    if len(head) > 262 and head[257:262] == b"ustar":
        return "it is a tar archive, not a disk image"
    if recognise(head) is None:
        if len(head) < 512:
            return f"it is only {len(head)} bytes long, too short to be a disk image"
        return ("it does not start like a disk image (qcow2, raw with a boot sector, "
                "ISO, VMDK, VDI, VHD or VHDX)")
    return None


async def probe(url: str, field: str = "url") -> str:
    """Check ``url`` and that it serves a disk image; return the format seen."""
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            target = URL(url)
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"{field}: {shown(url)} is not a valid URL: {exc}") from exc
        addresses = await check(str(target), field)
        host = (target.raw_host or "").lower()
        connector = aiohttp.TCPConnector(resolver=PinnedResolver(host, addresses),
                                         use_dns_cache=False)
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False,
                headers={"User-Agent": "sfcloud-portal", "Accept-Encoding": "identity",
                         "Range": f"bytes=0-{PROBE_BYTES - 1}"},
            ) as session, session.get(target, allow_redirects=False) as response:
                if response.status in _REDIRECTS:
                    location = response.headers.get("Location")
                    if not location:
                        raise BadRequest(f"{field}: {host} sent a redirect without a location")
                    url = str(response.url.join(URL(location)))
                    continue
                if response.status not in (200, 206):
                    raise BadRequest(f"{field}: {host} answered {response.status} "
                                     f"{response.reason or ''} for {url}".rstrip())
                head = await response.content.read(PROBE_BYTES)
                while len(head) < PROBE_BYTES and (more := await response.content.read(
                        PROBE_BYTES - len(head))):
                    head += more
                reason = why_not_an_image(head, response.content_type)
                if reason:
                    raise BadRequest(f"{field}: {url} cannot be used: {reason}")
                return recognise(head) or "raw"
        except TimeoutError as exc:
            raise BadRequest(f"{field}: {host} did not answer within "
                             f"{PROBE_TIMEOUT:g} seconds") from exc
        except aiohttp.ClientError as exc:
            raise BadRequest(f"{field}: could not fetch {url}: {exc}") from exc
    raise BadRequest(f"{field}: {url} redirects more than {MAX_REDIRECTS} times")
