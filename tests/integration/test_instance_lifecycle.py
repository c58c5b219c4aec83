"""The walking skeleton, end to end: API -> etcd -> node agent -> a guest
that really boots -> delete, with nothing left behind."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration


def create(cloud: Cloud, name: str, **extra: object) -> dict:
    body = {"name": name, "cpus": 1, "memory": 256,
            "disk": [{"size": 1, "base": "demo", "bus": None, "type": "disk"}], **extra}
    response = cloud.api().post("/instances", body)
    assert response.status_code == 200, response.text
    return response.json()


def instance(cloud: Cloud, ref: str) -> dict:
    response = cloud.api().get(f"/instances/{ref}")
    assert response.status_code == 200, response.text
    return response.json()


def test_create_boot_delete(cloud: Cloud) -> None:
    created = create(cloud, "lifecycle")
    uuid = created["uuid"]
    assert created["state"] == "initial"
    assert created["node"] == cloud.node

    log = cloud.wait_console(uuid, "SFCLOUD-READY")
    assert "SFCLOUD-GUEST-UP" in log
    # The hostname reached the guest through the config drive.
    assert "SFCLOUD-HOSTNAME: lifecycle" in log
    shown = wait_for(lambda: (i := instance(cloud, uuid))["power_state"] == "on" and i,
                     30, "power state on")
    assert shown["state"] == "created"
    assert cloud.domains() == {uuid: 1}  # VIR_DOMAIN_RUNNING
    disk = cloud.instance_dir(uuid) / "vda.qcow2"
    assert disk.exists()

    response = cloud.api().delete(f"/instances/{uuid}")
    assert response.status_code == 200
    assert response.json()["uuid"] == uuid
    wait_for(lambda: instance(cloud, uuid)["state"] == "deleted", 30, "state deleted")

    assert uuid not in cloud.domains()
    assert not cloud.instance_dir(uuid).exists()
    # Deleted instances stay readable by UUID, as Shaken Fist's client needs,
    # but leave every list and free their name.
    assert instance(cloud, uuid)["state"] == "deleted"
    assert uuid not in [i["uuid"] for i in cloud.api().get("/instances").json()]
    assert cloud.api().get("/instances/lifecycle").status_code == 404


def test_guest_powering_itself_off_shows_as_off(cloud: Cloud) -> None:
    """Reality wins: a guest that shuts down is reported off and left off."""
    import libvirt

    uuid = create(cloud, "selfoff")["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")
    conn = libvirt.open("qemu:///system")
    try:
        # The ACPI power button, pressed from outside sfcloud: the guest's
        # own acpid powers it off.
        conn.lookupByUUIDString(uuid).shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    finally:
        conn.close()
    wait_for(lambda: instance(cloud, uuid)["power_state"] == "off", 60, "power state off")
    assert instance(cloud, uuid)["state"] == "created"
    # And it stays off: the agent does not "repair" a guest's own decision.
    cloud.api().get("/instances")  # give the agent a moment's worth of events
    assert cloud.domains()[uuid] == 5  # VIR_DOMAIN_SHUTOFF
    cloud.api().delete(f"/instances/{uuid}")
    wait_for(lambda: instance(cloud, uuid)["state"] == "deleted", 30, "state deleted")


def test_deleted_instances_are_forgotten_after_the_retention(etcd_server, guest_image_dir,
                                                             libvirt_daemon) -> None:
    """With a short retention, a deleted instance's and network's records leave etcd."""
    short = Cloud(etcd_server, demo_image=guest_image_dir / "disk.qcow2",
                  SFCLOUD_DELETED_RETENTION="2", SFCLOUD_JANITOR_INTERVAL="1")
    try:
        short.start()
        network = short.api().post("/networks", {"name": "brief-net",
                                                 "netblock": "10.97.0.0/24"}).json()["uuid"]
        wait_for(lambda: short.api().get(f"/networks/{network}").json()["state"] == "created",
                 60, "the network created")
        created = short.api().post("/instances", {
            "name": "brief", "cpus": 1, "memory": 128, "disk": [{"size": 1}],
            "network": [{"network_uuid": network}]}).json()
        uuid, nic = created["uuid"], created["interfaces"][0]["uuid"]
        wait_for(lambda: short.api().get(f"/instances/{uuid}").json()["state"] == "created",
                 60, "created")
        short.api().delete(f"/instances/{uuid}")
        wait_for(lambda: short.api().get(f"/instances/{uuid}").status_code == 404,
                 30, "the purge")
        # Its interface, readable while the instance was, goes with it.
        assert short.api().get(f"/interfaces/{nic}").status_code == 404
        assert not [key for key in short.etcd_keys() if uuid in key or nic in key]

        # Read back as deleted first (the retention is counted from the delete), then gone.
        assert short.api().delete(f"/networks/{network}").status_code == 200
        wait_for(lambda: short.api().get(f"/networks/{network}").status_code == 404,
                 60, "the network's purge")
        assert not [key for key in short.etcd_keys() if network in key]
    finally:
        short.stop()
