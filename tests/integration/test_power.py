"""Power actions through the API, with libvirt as the ground truth: each one
changes the real domain (and the guest shows it on its serial console), the
reported power state follows libvirt's events, and actions that make no sense
in the current state are refused with 409 (or 406 while not yet created)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.integration

RUNNING, PAUSED, SHUTOFF = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                            libvirt.VIR_DOMAIN_SHUTOFF)


@pytest.fixture
def stalling_server(guest_image_dir: Path) -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as server:
        server.serve_stalling("/stall.qcow2", (guest_image_dir / "disk.qcow2").read_bytes(),
                              stall_after=4096, stall_for=None,
                              content_type="application/x-qcow2")
        yield server


def create(cloud: Cloud, name: str, base: str = "demo") -> str:
    response = cloud.api().post("/instances", {
        "name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": base}]})
    assert response.status_code == 200, response.text
    return response.json()["uuid"]


def show(cloud: Cloud, uuid: str) -> dict:
    return cloud.api().get(f"/instances/{uuid}").json()


def act(cloud: Cloud, uuid: str, verb: str) -> tuple[int, object]:
    response = cloud.api().post(f"/instances/{uuid}/{verb}")
    return response.status_code, response.json()


def domain_state(uuid: str) -> int | None:
    conn = libvirt.open("qemu:///system")
    try:
        return conn.lookupByUUIDString(uuid).state()[0]
    except libvirt.libvirtError:
        return None
    finally:
        conn.close()


def settle(cloud: Cloud, uuid: str, libvirt_state: int, power: str) -> None:
    """Wait until libvirt shows the state, and the API reports it."""
    wait_for(lambda: domain_state(uuid) == libvirt_state, 60,
             f"libvirt state {libvirt_state} for {uuid}")
    wait_for(lambda: show(cloud, uuid)["power_state"] == power, 30,
             f"power state {power} in the API")


def boots(cloud: Cloud, uuid: str) -> int:
    return cloud.console_log(uuid).count("SFCLOUD-GUEST-UP")


def test_each_power_action_changes_the_real_domain(cloud: Cloud) -> None:
    uuid = create(cloud, "powervm")
    cloud.wait_console(uuid, "SFCLOUD-READY")
    settle(cloud, uuid, RUNNING, "on")

    # Pause: the vCPUs stop; libvirt says paused and so does the API.
    assert act(cloud, uuid, "pause") == (200, None)
    settle(cloud, uuid, PAUSED, "paused")
    status, body = act(cloud, uuid, "pause")
    assert status == 409 and "already paused" in body["error"]
    status, body = act(cloud, uuid, "rebootsoft")
    assert status == 409 and "paused" in body["error"]

    assert act(cloud, uuid, "unpause") == (200, None)
    settle(cloud, uuid, RUNNING, "on")
    status, body = act(cloud, uuid, "unpause")
    assert status == 409 and "not paused" in body["error"]

    # Soft reboot: the guest's own ACPI handler shuts down and it boots again.
    before = boots(cloud, uuid)
    assert act(cloud, uuid, "rebootsoft") == (200, None)
    wait_for(lambda: boots(cloud, uuid) > before, 90, "the guest to boot again after ACPI reboot")
    assert "SFCLOUD-SHUTDOWN" in cloud.console_log(uuid)
    cloud.wait_console(uuid, "SFCLOUD-READY")
    settle(cloud, uuid, RUNNING, "on")

    # Hard reboot: reset from outside, no clean shutdown needed.
    before = boots(cloud, uuid)
    shutdowns = cloud.console_log(uuid).count("SFCLOUD-SHUTDOWN")
    assert act(cloud, uuid, "reboothard") == (200, None)
    wait_for(lambda: boots(cloud, uuid) > before, 90, "the guest to boot again after reset")
    assert cloud.console_log(uuid).count("SFCLOUD-SHUTDOWN") == shutdowns
    settle(cloud, uuid, RUNNING, "on")

    # Power off: the domain stops and stays stopped.
    assert act(cloud, uuid, "poweroff") == (200, None)
    settle(cloud, uuid, SHUTOFF, "off")
    for verb, words in (("poweroff", "already off"), ("pause", "powered off"),
                        ("unpause", "not paused"), ("rebootsoft", "power it on"),
                        ("reboothard", "power it on")):
        status, body = act(cloud, uuid, verb)
        assert status == 409, (verb, body)
        assert words in body["error"], (verb, body)
    assert domain_state(uuid) == SHUTOFF

    # Power on: it boots again, from a freshly built config drive.
    before = boots(cloud, uuid)
    assert act(cloud, uuid, "poweron") == (200, None)
    wait_for(lambda: boots(cloud, uuid) > before, 90, "the guest to boot after power on")
    settle(cloud, uuid, RUNNING, "on")
    status, body = act(cloud, uuid, "poweron")
    assert status == 409 and "already on" in body["error"]

    # Every action the portal was asked for and the agent applied is in the log.
    events = cloud.api().get(f"/instances/{uuid}/events", {"limit": 200}).json()
    messages = [e["message"] for e in events]
    for action in ("pause", "unpause", "rebootsoft", "reboothard", "off", "on"):
        assert f"power action {action} applied" in messages, messages
    assert any(m.startswith("power state on -> paused") for m in messages)

    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: show(cloud, uuid)["state"] == "deleted", 60, "deleted")
    status, body = act(cloud, uuid, "poweron")
    assert status == 409 and "being deleted" in body["error"]


def test_not_yet_created_is_406_so_the_client_retries(cloud: Cloud,
                                                     stalling_server: HTTPTestServer) -> None:
    uuid = create(cloud, "powerwait", base=stalling_server.url("/stall.qcow2"))
    wait_for(lambda: show(cloud, uuid)["state"] == "creating", 30, "state creating")
    for verb in ("poweron", "poweroff", "pause", "unpause", "rebootsoft", "reboothard"):
        status, body = act(cloud, uuid, verb)
        assert status == 406, (verb, body)
        assert "not created yet" in body["error"]
    stalling_server.release_stalls()
    cloud.wait_console(uuid, "SFCLOUD-READY")
    assert act(cloud, uuid, "pause") == (200, None)
    settle(cloud, uuid, PAUSED, "paused")
    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: show(cloud, uuid)["state"] == "deleted", 60, "deleted")
