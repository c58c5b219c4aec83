"""Shaken Fist's own command-line client, unchanged, against sfcloud."""

from __future__ import annotations

import json

import pytest

from tests.support.cloud import Cloud

pytestmark = pytest.mark.integration


def test_instance_create_list_show_delete_and_node_list(cloud: Cloud) -> None:
    created = cloud.sf("--json", "instance", "create", "sfvm", "1", "256", "-d", "1@demo")
    shown = json.loads(created.stdout)
    uuid = shown["uuid"]
    # The client waits while the state is initial or creating.
    assert shown["state"] == "created", shown
    assert shown["node"] == cloud.node

    listed = json.loads(cloud.sf("--json", "instance", "list").stdout)["instances"]
    assert uuid in [item["uuid"] for item in listed]

    by_name = cloud.sf("instance", "show", "sfvm").stdout
    assert uuid in by_name and "created" in by_name

    nodes = cloud.sf("node", "list").stdout
    assert cloud.node in nodes

    # delete waits, by UUID, until the instance reads "deleted".
    cloud.sf("instance", "delete", uuid)
    assert json.loads(cloud.sf("--json", "instance", "show", uuid).stdout)["state"] == "deleted"
    assert uuid not in cloud.domains()


def test_bad_input_is_reported_by_the_client(cloud: Cloud) -> None:
    result = cloud.sf("instance", "create", "bad_name", "1", "256", "-d", "1@demo", check=False)
    assert result.returncode != 0
    assert "not a valid hostname" in result.stdout + result.stderr

    result = cloud.sf("instance", "create", "huge", "1", "900000", "-d", "1@demo", check=False)
    assert result.returncode != 0
    assert "Insufficient Resources" in result.stdout + result.stderr
    assert "MiB memory free" in result.stdout + result.stderr


def test_instance_operations_with_the_client(cloud: Cloud, image_server) -> None:  # type: ignore[no-untyped-def]
    """Shaken Fist's client drives every instance operation unchanged."""
    import libvirt

    from tests.support.cloud import wait_for

    def domain_state(uuid: str) -> int:
        conn = libvirt.open("qemu:///system")
        try:
            return conn.lookupByUUIDString(uuid).state()[0]
        finally:
            conn.close()

    def shown(ref: str) -> dict:
        return json.loads(cloud.sf("--json", "instance", "show", ref).stdout)

    created = json.loads(cloud.sf("--json", "instance", "create", "sfops", "1", "128",
                                  "-d", "1@demo").stdout)
    uuid = created["uuid"]
    cloud.wait_console(uuid, "SFCLOUD-READY")

    cloud.sf("instance", "pause", "sfops")
    wait_for(lambda: domain_state(uuid) == libvirt.VIR_DOMAIN_PAUSED, 30, "paused in libvirt")
    wait_for(lambda: shown(uuid)["power_state"] == "paused", 30, "paused in the client")
    cloud.sf("instance", "unpause", "sfops")
    wait_for(lambda: domain_state(uuid) == libvirt.VIR_DOMAIN_RUNNING, 30, "running again")

    boots = cloud.console_log(uuid).count("SFCLOUD-GUEST-UP")
    cloud.sf("instance", "reboot", "sfops")
    wait_for(lambda: cloud.console_log(uuid).count("SFCLOUD-GUEST-UP") > boots, 90, "soft reboot")
    cloud.wait_console(uuid, "SFCLOUD-READY")
    boots = cloud.console_log(uuid).count("SFCLOUD-GUEST-UP")
    cloud.sf("instance", "reboot", "--hard", "sfops")
    wait_for(lambda: cloud.console_log(uuid).count("SFCLOUD-GUEST-UP") > boots, 90, "hard reboot")

    cloud.sf("instance", "poweroff", "sfops")
    wait_for(lambda: domain_state(uuid) == libvirt.VIR_DOMAIN_SHUTOFF, 30, "off in libvirt")
    wait_for(lambda: shown(uuid)["power_state"] == "off", 30, "off in the client")
    refused = cloud.sf("instance", "pause", "sfops", check=False)
    assert refused.returncode != 0 and "powered off" in refused.stdout + refused.stderr
    cloud.sf("instance", "poweron", "sfops")
    wait_for(lambda: domain_state(uuid) == libvirt.VIR_DOMAIN_RUNNING, 30, "on in libvirt")

    # Tags: JSON for "tags", a plain string otherwise, as the client sends them.
    cloud.sf("instance", "set-metadata", "sfops", "tags", '["web", "blue"]')
    cloud.sf("instance", "set-metadata", "sfops", "owner", "alice")
    assert shown(uuid)["metadata"] == {"tags": ["web", "blue"], "owner": "alice"}
    cloud.sf("instance", "delete-metadata", "sfops", "owner")
    assert shown(uuid)["metadata"] == {"tags": ["web", "blue"]}

    snapshot = json.loads(cloud.sf("--json", "instance", "snapshot", "sfops").stdout)
    assert list(snapshot) == ["vda"]
    # The client waited until the snapshot was created.
    listed = json.loads(cloud.sf("--json", "instance", "show", "-s", "sfops").stdout)["snapshots"]
    # As Shaken Fist lists them: the artifact's uuid, the blob's state.
    assert [(s["uuid"], s["device"]) for s in listed] == \
        [(snapshot["vda"]["artifact_uuid"], "vda")]
    versions = cloud.api().get(f"/instances/{uuid}/snapshot").json()
    assert [(s["blob_uuid"], s["state"]) for s in versions] == \
        [(snapshot["vda"]["blob_uuid"], "created")]
    assert cloud.api().get(f"/artifacts/{snapshot['vda']['artifact_uuid']}").json()["state"] \
        == "created"

    events = json.loads(cloud.sf("--json", "instance", "events", "sfops").stdout)
    messages = [e["message"] for e in events]
    for wanted in ("power action pause applied", "power action unpause applied",
                   "power action rebootsoft applied", "power action reboothard applied",
                   "power action off applied", "power action on applied",
                   "metadata owner deleted by key system/admin"):
        assert wanted in messages, (wanted, messages)
    only_audit = json.loads(cloud.sf("--json", "instance", "events", "-t", "audit", "-l", "3",
                                     "sfops").stdout)
    assert len(only_audit) == 3 and {e["type"] for e in only_audit} == {"audit"}
    pretty = cloud.sf("instance", "events", "sfops").stdout
    assert cloud.node in pretty and "power action on applied" in pretty

    cloud.sf("instance", "delete", uuid)
    cloud.api().delete(f"/artifacts/{snapshot['vda']['artifact_uuid']}")


def test_artifact_cache_and_list_with_the_client(cloud: Cloud, image_server) -> None:  # type: ignore[no-untyped-def]
    from tests.support.cloud import wait_for

    url = image_server.url("/demo.qcow2") + "?sf-client-cache"
    cloud.sf("artifact", "cache", url)
    listed = json.loads(cloud.sf("--json", "artifact", "list").stdout)
    mine = [a for a in listed if a["source_url"] == url]
    assert len(mine) == 1 and mine[0]["artifact_type"] == "image"
    uuid = mine[0]["uuid"]
    wait_for(lambda: json.loads(cloud.sf("--json", "artifact", "show", uuid).stdout)["state"]
             == "created", 60, "the artifact to be cached")
    table = cloud.sf("artifact", "list").stdout
    assert uuid in table and "created" in table
    cloud.api().delete(f"/artifacts/{uuid}")
