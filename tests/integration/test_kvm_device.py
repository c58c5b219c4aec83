"""A host whose /dev/kvm is root-only (no udev) still creates guests in
seconds: ``make run`` (through LocalLibvirt) and the agent's start give the
device Debian's group and mode, which stops libvirt re-probing QEMU at every
define (about a minute per create otherwise)."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.localvirt import LocalLibvirt
from nodeagent.kvmdevice import KVM_DEVICE
from tests.support.cloud import Cloud, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not KVM_DEVICE.exists(), reason="this host has no /dev/kvm"),
]


@pytest.fixture
def root_only_kvm() -> Iterator[None]:
    """/dev/kvm as a machine without udev has it; put back as found after."""
    before = KVM_DEVICE.stat()
    os.chown(KVM_DEVICE, 0, 0)
    os.chmod(KVM_DEVICE, 0o600)
    try:
        yield
    finally:
        os.chown(KVM_DEVICE, before.st_uid, before.st_gid)
        os.chmod(KVM_DEVICE, stat.S_IMODE(before.st_mode))


def _is_debians() -> bool:
    info = KVM_DEVICE.stat()
    return stat.S_IMODE(info.st_mode) == 0o660 and info.st_gid != 0


def test_make_runs_libvirt_step_fixes_it(root_only_kvm: None, tmp_path: Path) -> None:
    # No stop(): this process is already registered as a user of libvirtd by
    # the session's fixture, and leaving here would stop it under the suite.
    LocalLibvirt(tmp_path).ensure()
    assert _is_debians()


def test_agent_start_fixes_it_and_the_first_create_is_quick(
        cloud: Cloud, root_only_kvm: None) -> None:
    cloud.stop_agent()
    cloud.start_agent()
    assert _is_debians()
    assert "libvirt stops re-probing QEMU" in cloud.log_text("agent")

    started = time.monotonic()
    response = cloud.api().post("/instances", {
        "name": "kvmdevice", "cpus": 1, "memory": 256,
        "disk": [{"size": 1, "base": "demo", "type": "disk"}]})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    try:
        wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["power_state"] == "on",
                 60, "the instance to power on")
        # Re-probing QEMU at every define took about a minute per create.
        assert time.monotonic() - started < 20
    finally:
        cloud.api().delete(f"/instances/{uuid}")
