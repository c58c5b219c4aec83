from __future__ import annotations

import pytest

from portal.cloud import urlcheck
from portal.cloud.errors import BadRequest


def qcow2() -> bytes:
    return b"QFI\xfb" + b"\x00" * 1020


def raw_disk() -> bytes:
    head = bytearray(4096)
    head[510:512] = b"\x55\xaa"
    return bytes(head)


def iso() -> bytes:
    head = bytearray(0x9000)
    head[0x8001:0x8006] = b"CD001"
    return bytes(head)


@pytest.mark.parametrize("head,kind", [
    (qcow2(), "qcow2"), (raw_disk(), "raw"), (iso(), "iso"),
    (b"KDMV" + bytes(600), "vmdk"), (b"vhdxfile" + bytes(600), "vhdx"),
    (b"<<< Oracle VM VirtualBox Disk Image >>>\n".ljust(0x40, b"\0") + b"\x7f\x10\xda\xbe",
     "vdi"),
])
def test_images_are_recognised(head: bytes, kind: str) -> None:
    assert urlcheck.recognise(head) == kind
    assert urlcheck.why_not_an_image(head, "application/octet-stream") is None


@pytest.mark.parametrize("head,content_type,words", [
    (qcow2(), "text/html", "web page"),
    (b"\x1f\x8b" + bytes(2000), "application/gzip", "gzip-compressed"),
    (bytes(257) + b"ustar" + bytes(800), "application/x-tar", "tar archive"),
    (b"hello", "text/plain", "only 5 bytes"),
    (b"plain words " * 100, "text/plain", "does not start like a disk image"),
])
def test_what_is_not_an_image_says_why(head: bytes, content_type: str, words: str) -> None:
    assert words in (urlcheck.why_not_an_image(head, content_type) or "")


async def test_networks_allowed_are_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFCLOUD_FETCH_ALLOW", raising=False)
    with pytest.raises(BadRequest, match="url: refusing to fetch from 127.0.0.1: it is a loopback"):
        await urlcheck.check("http://127.0.0.1/x.qcow2")
    monkeypatch.setenv("SFCLOUD_FETCH_ALLOW", "127.0.0.0/8")
    assert [str(a) for a in await urlcheck.check("http://127.0.0.1/x.qcow2")] == ["127.0.0.1"]
    # Metadata addresses stay refused whatever is allowed.
    monkeypatch.setenv("SFCLOUD_FETCH_ALLOW", "169.254.0.0/16")
    with pytest.raises(BadRequest, match="metadata service"):
        await urlcheck.check("http://169.254.169.254/")
