"""pytest fixtures for a real etcd (a plugin module: list it in ``pytest_plugins``).

- ``etcd_server``: one LocalEtcd for the whole session, in a temp dir.
- ``etcd_prefix`` / ``etcd``: a unique key prefix per test and a client
  connected to the shared server; the prefix is deleted afterwards, so tests
  can share the server without seeing each other's keys.
- ``private_etcd_server`` / ``private_etcd``: a member of the test's own, for
  tests that stop, kill, restart or compact etcd.

Tests are skipped, not failed, on a machine without an etcd binary.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cloudstate.etcd import Etcd, EtcdUnavailable
from deploy.localetcd import ETCD_BINARY, LocalEtcd


def _need_etcd() -> None:
    if not Path(ETCD_BINARY).exists():
        pytest.fail(f"{ETCD_BINARY} is not installed: run `make test-deps`")


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[LocalEtcd]:
    _need_etcd()
    workdir = Path(tempfile.mkdtemp(prefix="sfcloud-etcd-"))
    server = LocalEtcd(workdir / "data", name="sfcloud-test")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def private_etcd_server() -> Iterator[LocalEtcd]:
    _need_etcd()
    workdir = Path(tempfile.mkdtemp(prefix="sfcloud-etcd-private-"))
    server = LocalEtcd(workdir / "data", name="sfcloud-private")
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
    client = Etcd(etcd_server.endpoints)
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
    client = Etcd(private_etcd_server.endpoints)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def portal_etcd(settings, etcd_server: LocalEtcd, etcd: Etcd,  # type: ignore[no-untyped-def]
                      etcd_prefix: str) -> AsyncIterator[None]:
    """The portal's services (portal.cloud.store) pointed at this test's own
    prefix of the session's etcd, for tests that call them in this process."""
    from portal.cloud import store

    settings.CLOUD = dataclasses.replace(settings.CLOUD, etcd_endpoints=etcd_server.endpoints,
                                         etcd_prefix=etcd_prefix)
    try:
        yield
    finally:
        await store.etcd().close()
