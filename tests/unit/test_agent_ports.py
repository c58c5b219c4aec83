"""nodeagent.net.ports: putting a running guest's taps in their bridges.

Right after the agent starts, an instance's pass may come before its
network's, whose pass builds the bridge and then puts every local tap in
it. A missing bridge is then no error of the instance: the tap is left to
the network's next pass, which is asked for. (The chaos test found it:
seed 538728387 failed the instance with "bridge ... does not exist".)
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cloudstate.etcd import KeyValue
from cloudstate.keys import Keys
from cloudstate.model import InstanceSpec, InterfaceSpec, NetworkSpec
from nodeagent.net import kernel
from nodeagent.net.context import NetworkContext
from nodeagent.net.names import NetNames
from nodeagent.net.ports import Ports

KEYS = Keys("/sfcloud/")
INSTANCE = "7f1d2c3b-0000-4000-8000-000000000001"
BUILT, UNBUILT, GONE = (f"7f1d2c3b-0000-4000-8000-00000000010{n}" for n in range(3))


class Mirror:
    def __init__(self, records: dict[str, dict]):
        self._kvs = {key: KeyValue(key, _json(value), 1, 1, 1, 0)
                     for key, value in records.items()}

    def get(self, key: str) -> KeyValue | None:
        return self._kvs.get(key)


def _json(value: dict) -> bytes:
    return json.dumps(value).encode()


class Mesh:
    """Bridge UNBUILT's network has no bridge yet; GONE's tap is missing."""

    def __init__(self) -> None:
        self.attached: list[str] = []

    def attach_tap(self, iface: InterfaceSpec, network: NetworkSpec) -> bool:
        if iface.network_uuid == UNBUILT:
            raise kernel.MissingBridge(f"bridge of {network.name} does not exist")
        if iface.network_uuid == GONE:
            return False
        self.attached.append(network.name)
        return True


def _ports(mirror: Mirror, mesh: Mesh, retried: list[str]) -> Ports:
    context = NetworkContext(node="node-a", node_ip="10.0.0.11", names=NetNames("sft"),
                             vxlan_port=4789, networks_dir=Path("/nonexistent"),
                             wants_network_node=False)
    return Ports(context=context, keys=KEYS, mirror=mirror, mesh=mesh,  # type: ignore[arg-type]
                 filtering=None, wanted=lambda snap: set(),  # type: ignore[arg-type]
                 lock=asyncio.Lock(), retry_later=retried.append)


def test_a_tap_whose_bridge_is_not_built_yet_waits_for_its_networks_pass() -> None:
    records: dict[str, dict] = {}
    interfaces = []
    for order, (network, name) in enumerate(((UNBUILT, "late"), (BUILT, "ready"),
                                             (GONE, "tapless"))):
        iface = f"7f1d2c3b-0000-4000-8000-00000000020{order}"
        interfaces.append(iface)
        records[KEYS.interface(iface)] = InterfaceSpec(
            uuid=iface, network_uuid=network, instance_uuid=INSTANCE, namespace="shop",
            order=order, macaddr=f"02:00:00:00:00:0{order}", ipv4=f"10.0.{order}.5").to_dict()
        records[KEYS.network(network)] = NetworkSpec(
            uuid=network, name=name, namespace="shop", netblock=f"10.0.{order}.0/24",
            vxid=4242 + order).to_dict()
    spec = InstanceSpec(uuid=INSTANCE, name="web-1", namespace="shop", cpus=1, memory=256,
                        node="node-a", disks=[], interfaces=interfaces)
    mesh, retried = Mesh(), []

    asyncio.run(_ports(Mirror(records), mesh, retried).attach(spec))  # raises nothing

    assert mesh.attached == ["ready"]  # the others did not stop it
    assert retried == [UNBUILT, GONE]  # each network asked for another pass
