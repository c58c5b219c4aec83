"""pytest fixtures for a real etcd (a plugin module: list it in ``pytest_plugins``).

- ``test_pki``: the session's CA and certificates (a PKI directory, as
  ``make run`` makes one); etcd, and every test cloud's portal and agents,
  use certificates from it.
- ``etcd_server``: one LocalEtcd for the whole session, in a temp dir, over
  TLS with client certificates required, as users run it.
- ``etcd_prefix`` / ``etcd``: a unique key prefix per test and a client
  connected to the shared server; the prefix is deleted afterwards, so tests
  can share the server without seeing each other's keys.
- ``private_etcd_server`` / ``private_etcd``: a member of the test's own, for
  tests that stop, kill, restart or compact etcd.
- ``portal_etcd``: the portal's services in this process on the test's
  prefix (``portal_cloud_settings`` says how the portal reaches etcd).

Tests are skipped, not failed, on a machine without an etcd binary.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudstate.config import Settings as CloudSettings
from cloudstate.etcd import Etcd, EtcdUnavailable
from deploy.localetcd import ETCD_BINARY, LocalEtcd
from deploy.pki import ensure_local_etcd


def _need_etcd() -> None:
    if not Path(ETCD_BINARY).exists():
        pytest.fail(f"{ETCD_BINARY} is not installed: run `make test-deps`")


@pytest.fixture(scope="session")
def test_pki() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="sfcloud-pki-")) / "pki"
    try:
        yield directory
    finally:
        shutil.rmtree(directory.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd_server(test_pki: Path) -> Iterator[LocalEtcd]:
    _need_etcd()
    workdir = Path(tempfile.mkdtemp(prefix="sfcloud-etcd-"))
    ensure_local_etcd(test_pki, "sfcloud-test")
    server = LocalEtcd(workdir / "data", pki_dir=test_pki, name="sfcloud-test")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def private_etcd_server(test_pki: Path) -> Iterator[LocalEtcd]:
    _need_etcd()
    workdir = Path(tempfile.mkdtemp(prefix="sfcloud-etcd-private-"))
    ensure_local_etcd(test_pki, "sfcloud-private")
    server = LocalEtcd(workdir / "data", pki_dir=test_pki, name="sfcloud-private")
    try:
        server.start()
        yield server
    finally:
        # A test may leave it stopped or killed; stop() copes with either.
        server.stop(timeout=5.0)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def etcd_prefix() -> str:
    return f"/test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
async def etcd(etcd_server: LocalEtcd, etcd_prefix: str) -> AsyncIterator[Etcd]:
    client = etcd_server.client()
    try:
        yield client
    finally:
        try:
            await client.delete_prefix(etcd_prefix)
        except EtcdUnavailable:
            pass  # the test broke the shared server; its own failure says so
        await client.close()


@pytest.fixture
async def private_etcd(private_etcd_server: LocalEtcd) -> AsyncIterator[Etcd]:
    client = private_etcd_server.client()
    try:
        yield client
    finally:
        await client.close()


def portal_cloud_settings(etcd_server: LocalEtcd, prefix: str, **more: Any) -> CloudSettings:
    """The portal's settings.CLOUD for a portal in this process: its etcd
    client on ``etcd_server`` under ``prefix``, presenting the portal's
    certificate from the session's PKI (the member takes no other)."""
    from django.conf import settings

    return dataclasses.replace(settings.CLOUD, etcd_endpoints=etcd_server.endpoints,
                               pki_dir=etcd_server.pki_dir, etcd_prefix=prefix, **more)


@pytest.fixture
async def portal_etcd(settings, etcd_server: LocalEtcd, etcd: Etcd,  # type: ignore[no-untyped-def]
                      etcd_prefix: str) -> AsyncIterator[None]:
    """The portal's services (portal.cloud.store) pointed at this test's own
    prefix of the session's etcd, for tests that call them in this process."""
    from portal.cloud import store

    settings.CLOUD = portal_cloud_settings(etcd_server, etcd_prefix)
    try:
        yield
    finally:
        await store.etcd().close()
