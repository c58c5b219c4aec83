"""Delete everything (instances, then networks at once, which wait for them)
and look at the machine and etcd: nothing of the cloud's networking is left."""

from __future__ import annotations

import pytest

from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import allow_ping, create_instance, create_network
from tests.support.networld import OutsideWorld, ping

pytestmark = pytest.mark.integration

RESERVATION_FAMILIES = ("ipam/", "vxlan/", "macs/", "interfaces/", "fences/networks/",
                        "names/networks/")


def test_delete_all_leaves_nothing_behind(netcloud: Cloud, outside_world: OutsideWorld) -> None:
    api = netcloud.api()
    try:
        check_delete_all(netcloud, outside_world)
    finally:
        # Whatever a failure left must not spoil the tests that follow.
        api.delete("/instances", {"confirm": True, "namespace": "system"})
        api.delete("/networks", {"confirm": True, "namespace": "system",
                                "clean_wait": True})


def check_delete_all(netcloud: Cloud, outside_world: OutsideWorld) -> None:
    api = netcloud.api()
    outer = create_network(netcloud, "leak-outer", "10.81.0.0/24")
    inner = create_network(netcloud, "leak-inner", "10.81.0.0/24", provide_dns=True,
                           provide_nat=False)
    both = create_instance(netcloud, "leak-both", [
        {"network_uuid": outer["uuid"], "float": True}, {"network_uuid": inner["uuid"]}])
    one = create_instance(netcloud, "leak-one", [{"network_uuid": inner["uuid"]}])
    netcloud.wait_console(both["uuid"], "SFCLOUD-READY", 150)
    netcloud.wait_console(one["uuid"], "SFCLOUD-READY", 150)
    floating = both["interfaces"][0]["floating"]
    allow_ping(netcloud, both["interfaces"][0]["uuid"])
    try:
        wait_for(lambda: ping(outside_world.www, floating), 60, "the floating address")
    except AssertionError as error:
        raise AssertionError(f"{error}\n--- console of leak-both (end):\n"
                             f"{netcloud.console_log(both['uuid'])[-3000:]}") from None
    in_use = netcloud.network_objects()
    assert len(in_use["dnsmasq"]) == 2 and len(in_use["namespaces"]) == 2
    assert netcloud.net_names.uplink_bridge in in_use["links"]

    deleted = api.delete("/instances", {"confirm": True, "namespace": "system"}).json()
    assert sorted(deleted) == sorted([both["uuid"], one["uuid"]])
    # At once, while the instances are still going: the networks wait for them.
    response = api.delete("/networks", {"confirm": True, "namespace": "system",
                                     "clean_wait": True})
    assert response.status_code == 200, response.text
    assert sorted(response.json()) == sorted([outer["uuid"], inner["uuid"]])
    for uuid in (outer["uuid"], inner["uuid"]):
        assert api.get(f"/networks/{uuid}").json()["state"] in ("delete-wait", "deleting",
                                                                 "deleted")
    for uuid in (outer["uuid"], inner["uuid"]):
        wait_for(lambda u=uuid: api.get(f"/networks/{u}").json()["state"] == "deleted", 90,
                 "the network deleted")

    # The machine: no namespace, bridge, VXLAN link, veth, tap, dnsmasq or
    # nftables table of this cloud.
    assert netcloud.network_objects() == {"namespaces": [], "links": [], "tables": [],
                                          "dnsmasq": []}
    assert not ping(outside_world.www, floating, count=1, wait=1)
    assert not any((netcloud.state_dir / "node" / netcloud.node / "networks").iterdir())
    # etcd: no reservation of any kind; networks kept only as deleted records.
    for family in RESERVATION_FAMILIES:
        assert netcloud.etcd_keys(family) == [], family
    # A blob's fence lives as long as the blob (the demo image's stays).
    blobs = {key.rsplit("/", 1)[-1] for key in netcloud.etcd_keys("blobs/")}
    fenced = {key.rsplit("/", 1)[-1] for key in netcloud.etcd_keys("fences/blobs/")}
    assert fenced <= blobs
    states = {n["state"] for n in api.get("/networks", {"all": True}).json()}
    assert states <= {"deleted"}
