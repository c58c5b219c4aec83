"""Kill the node agent at any point and restart it: it converges, with no
duplicate domain, no leaked disk and no half-made file."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration

# Named points inside one create (nodeagent/failpoints.py).
FAILPOINTS = ["after-overlay", "after-disks", "after-define", "after-power"]


def state(cloud: Cloud, uuid: str) -> dict:
    return cloud.api().get(f"/instances/{uuid}").json()


@pytest.mark.parametrize("failpoint", FAILPOINTS)
def test_agent_killed_mid_create_converges(cloud: Cloud, failpoint: str) -> None:
    cloud.stop_agent()
    dying = cloud.start_agent(failpoints=failpoint)
    try:
        response = cloud.api().post("/instances", {
            "name": f"crash-{failpoint}", "cpus": 1, "memory": 128,
            "disk": [{"size": 1, "base": "demo"}],
        })
        assert response.status_code == 200, response.text
        uuid = response.json()["uuid"]
        assert dying.wait(timeout=60) == 75, "the agent should have died at the failpoint"
    finally:
        cloud.start_agent()

    shown = wait_for(lambda: (s := state(cloud, uuid))["state"] == "created"
                     and s["power_state"] == "on" and s, 60, "the instance to converge")
    assert shown["error_message"] is None
    assert list(cloud.domains()) == [uuid]  # exactly one domain, ours
    files = sorted(p.name for p in cloud.instance_dir(uuid).iterdir())
    assert files == ["config.iso", "console.log", "vda.qcow2"], files
    cloud.wait_console(uuid, "SFCLOUD-READY")

    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: state(cloud, uuid)["state"] == "deleted", 30, "deleted")
    assert cloud.domains() == {}
    assert not cloud.instance_dir(uuid).exists()


def test_work_queued_while_the_agent_is_down(cloud: Cloud) -> None:
    """Creates and deletes made while no agent runs are done once it starts,
    and guests already running are left alone by a restart."""
    api = cloud.api()
    keep = api.post("/instances", {"name": "keeper", "cpus": 1, "memory": 128,
                                   "disk": [{"size": 1, "base": "demo"}]}).json()["uuid"]
    wait_for(lambda: state(cloud, keep)["power_state"] == "on", 60, "keeper running")
    doomed = api.post("/instances", {"name": "doomed", "cpus": 1, "memory": 128,
                                     "disk": [{"size": 1}]}).json()["uuid"]
    wait_for(lambda: state(cloud, doomed)["power_state"] == "on", 60, "doomed running")
    import libvirt

    conn = libvirt.open("qemu:///system")
    qemu_id = conn.lookupByUUIDString(keep).ID()
    conn.close()

    cloud.stop_agent(kill=True)
    fresh = api.post("/instances", {"name": "fresh", "cpus": 1, "memory": 128,
                                    "disk": [{"size": 1}]}).json()["uuid"]
    api.delete(f"/instances/{doomed}")
    assert state(cloud, fresh)["state"] == "initial"
    cloud.start_agent()

    wait_for(lambda: state(cloud, fresh)["power_state"] == "on", 60, "fresh running")
    wait_for(lambda: state(cloud, doomed)["state"] == "deleted", 60, "doomed deleted")
    assert sorted(cloud.domains()) == sorted([keep, fresh])
    conn = libvirt.open("qemu:///system")
    assert conn.lookupByUUIDString(keep).ID() == qemu_id, "the running guest was restarted"
    conn.close()
    for uuid in (keep, fresh):
        api.delete(f"/instances/{uuid}")
    wait_for(lambda: cloud.domains() == {}, 30, "all domains gone")
