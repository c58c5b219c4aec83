"""Session fixtures for tests that need a real bootable image, built once and cached.

Use from a test module (or a conftest) with::

    pytest_plugins = ["tests.support.fixtures_images"]

The cache lives in ``<repo>/var/cache/guest-image``, or ``$SFCLOUD_TEST_CACHE/guest-image``
when that is set (CI can point it at a persistent volume). No Django imports here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudstate.settings import read
from deploy.guestimage import ensure_guest_image
from tests.support.httpserve import HTTPTestServer

REPO_ROOT = Path(__file__).resolve().parents[2]


def guest_image_cache_root() -> Path:
    override = read("SFCLOUD_TEST_CACHE")
    if override:
        return override / "guest-image"
    return REPO_ROOT / "var" / "cache" / "guest-image"


@pytest.fixture(scope="session")
def guest_image_dir() -> Path:
    """Directory with disk.qcow2, vmlinuz, initrd.gz and image.json (read-only: share it)."""
    return ensure_guest_image(guest_image_cache_root())


@pytest.fixture(scope="session")
def image_server(guest_image_dir: Path) -> Iterator[HTTPTestServer]:
    """An HTTP server on 127.0.0.1 serving the guest disk as /demo.qcow2.

    Session-wide: tests may add routes with their own paths, and should compare request
    counts before and after rather than assume they start at zero.
    """
    with HTTPTestServer() as server:
        server.serve_file(
            "/demo.qcow2", guest_image_dir / "disk.qcow2", content_type="application/x-qcow2"
        )
        yield server
