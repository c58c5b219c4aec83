"""Fixtures shared by the whole suite (tests/ and e2e/).

The ``cloud`` fixture is a complete sfcloud (portal + node agent as real
processes) on a real etcd and this machine's libvirtd, shared by the tests of
a session because starting one costs a few seconds. Tests that break it on
purpose (killing the agent) put it back as they found it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.localvirt import LocalLibvirt
from tests.support.cloud import Cloud
from tests.support.leftovers import remove_orphaned_domains

pytest_plugins = [
    "tests.support.fixtures_etcd",
    "tests.support.fixtures_images",
    "tests.support.fixtures_networks",
]


@pytest.fixture(scope="session")
def libvirt_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """libvirtd and virtlogd, started for the session if nothing runs them."""
    local = LocalLibvirt(tmp_path_factory.mktemp("libvirt-logs"))
    local.ensure()
    remove_orphaned_domains()  # guests of earlier runs that were killed before cleaning up
    try:
        yield
    finally:
        local.stop()


@pytest.fixture(scope="session")
def cloud(etcd_server, guest_image_dir: Path, libvirt_daemon: None) -> Iterator[Cloud]:  # type: ignore[no-untyped-def]
    running = Cloud(etcd_server, demo_image=guest_image_dir / "disk.qcow2")
    try:
        yield running.start()
    finally:
        running.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--scale-instances", type=int, default=2000,
                     help="instances in the browser test of the instance list at scale "
                          "(e2e/test_instance_list_scale.py; make scale gives 10000)")


@pytest.fixture
def outage_cloud(private_etcd_server, guest_image_dir: Path,  # type: ignore[no-untyped-def]
                 libvirt_daemon: None) -> Iterator[Cloud]:
    """A cloud on an etcd of the test's own, which the test may kill: etcd is
    started again, if it is down, before the cloud stops."""
    running = Cloud(private_etcd_server, demo_image=guest_image_dir / "disk.qcow2")
    try:
        yield running.start()
    finally:
        if not private_etcd_server.running:
            private_etcd_server.start()
        running.stop()
