"""What the portal writes through the API passes the node agent's gate.

nodeagent.records refuses records of shapes the portal never writes (its
unit tests try hostile ones). Here the portal writes the newer shapes for
real, through the routes Shaken Fist's client calls: UEFI with secure boot
and an NVRAM template, a disk on every bus and a cdrom, a floating NIC, a
NIC hot-plugged in and one taken out, a routed address, a DNS entry, node
metadata, network metadata. Then every key under the cloud's prefix goes
through the gate as the agent's mirror would take it: none may be refused,
or the agent would report an error for what a person asked for properly.
"""

from __future__ import annotations

from cloudstate.etcd import KeyValue
from nodeagent.records import RecordGate
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal


def _everything(portal: InProcessPortal) -> list[KeyValue]:
    kvs, _ = portal.etcd_call(lambda etcd: etcd.get_prefix(portal.keys.root))
    return kvs


def test_every_record_the_api_writes_passes_the_agent_gate(portal: InProcessPortal,
                                                           agent: FakeAgent,
                                                           demo_image: str) -> None:
    api = portal.api()
    network = api.post("/networks", {"name": "gate", "netblock": "10.90.0.0/24",
                                     "provide_nat": True, "provide_dns": True})
    assert network.status_code == 200, network.text
    net_uuid = network.json()["uuid"]
    agent.report_network(net_uuid)
    other = api.post("/networks", {"name": "gate2", "netblock": "10.91.0.0/24",
                                   "provide_nat": False})
    assert other.status_code == 200, other.text
    agent.report_network(other.json()["uuid"])

    routed = api.post(f"/networks/{net_uuid}/route")
    assert routed.status_code == 200, routed.text
    for name, value in (("db", "10.90.0.9"), ("www.example.org", routed.json())):
        answer = api.post(f"/networks/{net_uuid}/dns", {"name": name, "value": value})
        assert answer.status_code == 200, answer.text
    assert api.put(f"/networks/{net_uuid}/metadata/owner", {"value": "ops"}).status_code == 200
    assert api.put(f"/nodes/{agent.node}/metadata/rack", {"value": {"row": 3}}).status_code \
        == 200

    created = api.post("/instances", {
        "name": "gate", "cpus": 1, "memory": 256,
        "uefi": True, "secure_boot": True, "nvram_template": "demo",
        "disk": [{"size": 1, "base": "demo"}, {"size": 1, "bus": "sata"},
                 {"size": 1, "bus": "scsi"}, {"size": 1, "bus": "nvme"},
                 {"size": 1, "bus": "usb"}, {"base": "demo", "type": "cdrom"}],
        "network": [{"network_uuid": net_uuid, "float": True},
                    {"network_uuid": other.json()["uuid"]}],
    })
    assert created.status_code == 200, created.text
    instance = created.json()["uuid"]
    agent.report_instance(instance, state="created", power_state="on")
    plugged = api.post(f"/instances/{instance}/interfaces",
                       {"network": {"network_uuid": net_uuid, "address": "10.90.0.20"}})
    assert plugged.status_code == 200, plugged.text
    second = [i for i in api.get(f"/instances/{instance}/interfaces").json() if i["order"] == 1]
    unplugged = api.delete(f"/instances/{instance}/interfaces/{second[0]['uuid']}")
    assert unplugged.status_code == 200, unplugged.text

    gate = RecordGate(portal.keys)
    kvs = _everything(portal)
    # The test wrote what it meant to: instances, NICs, networks, reservations, node metadata.
    for family in (portal.keys.instances, portal.keys.interfaces, portal.keys.networks,
                   portal.keys.addresses(net_uuid), portal.keys.addresses("floating"),
                   portal.keys.macs, portal.keys.vxlans, portal.keys.node_specs,
                   portal.keys.observed_instances, portal.keys.observed_networks):
        assert any(kv.key.startswith(family) for kv in kvs), family
    refused = {kv.key: reason for kv in kvs if (reason := gate(kv.key, kv.value)) is not None}
    assert refused == {}
