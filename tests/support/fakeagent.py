"""A stand-in for a node agent at the etcd boundary, for the fast tests.

It writes only what a real agent would write into etcd: its node's record
and liveness (so the scheduler places instances on it), and, when a test
says so, the observed state of instances, networks and blobs (built,
running, torn down; a blob's bytes held). It runs no server: what the
portal asks of a node's agent (a console, an upload's bytes, a blob's, a
graph's history or live samples) answers 503, the node's agent
unreachable. It never reads desired state, builds or starts anything: a
test says what the agent "saw", and checks what the portal makes of it.

What a real agent does with desired state (guests, networks, images) is
covered by the integration tests under tests/integration, which run the
real one on libvirt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cloudstate.etcd import Etcd, KeyValue, Put
from cloudstate.keys import Keys
from cloudstate.model import (
    BlobObserved,
    InstanceObserved,
    InstanceSpec,
    NetworkObserved,
    NetworkSpec,
    NodeInfo,
)
from nodeagent.net import releases
from nodeagent.net import snapshot as net_snapshot
from tests.support.objects import Cloud


@dataclass(frozen=True)
class _Snapshot:
    """etcd's keys read at once, looked up as the agent's mirror is."""

    kvs: dict[str, KeyValue]

    def get(self, key: str) -> KeyValue | None:
        return self.kvs.get(key)

    def items(self, prefix: str = "") -> Iterator[KeyValue]:
        return iter([kv for key, kv in sorted(self.kvs.items()) if key.startswith(prefix)])

    def refused_items(self, prefix: str = "") -> list[Any]:
        return []  # read straight from etcd: no gate refuses anything here

    @classmethod
    async def read(cls, etcd: Etcd, keys: Keys) -> _Snapshot:
        kvs, _ = await etcd.get_prefix(keys.root)
        return cls({kv.key: kv for kv in kvs})


class FakeAgent:
    def __init__(self, cloud: Cloud, node: str = "fake-node"):
        self.cloud = cloud
        self.node = node

    @property
    def keys(self) -> Keys:
        return self.cloud.keys

    def register(self, vcpus: int = 8, memory_mib: int = 16384, disk_gb: int = 200,
                 network_node: bool = True,
                 firmware: tuple[str, ...] = ("uefi", "secure-boot")) -> FakeAgent:
        """The node record and liveness key an agent writes at start (the
        liveness key without its lease: this node never goes away), with the
        boot firmware it offers beyond BIOS (nodeagent.firmware.offered)."""
        info = NodeInfo(name=self.node, ip="127.0.0.1", vcpus=vcpus, memory_mib=memory_mib,
                        disk_total_gb=disk_gb, disk_free_gb=disk_gb, virt_type="qemu",
                        machine="pc", is_network_node=network_node, firmware=list(firmware))
        self._info = info

        async def write(etcd: Etcd) -> None:
            await etcd.put(self.keys.node(self.node), info.to_json())
            await etcd.put(self.keys.node_alive(self.node), b"1")

        self.cloud.etcd_call(write)
        return self

    def info(self) -> NodeInfo:
        """The node record register() wrote."""
        return self._info

    def report_instance(self, uuid: str, state: str = "created", power_state: str = "on",
                        error: str | None = None) -> None:
        """What the agent would report once it acted on the instance: for a
        guest that is running, every power action asked so far applied."""

        async def write(etcd: Etcd) -> None:
            kv = await etcd.get(self.keys.instance(uuid))
            assert kv is not None, f"instance {uuid} has no desired record"
            spec = InstanceSpec.from_json(kv.value)
            observed = InstanceObserved(node=spec.node, state=state, power_state=power_state,
                                        error=error,
                                        applied_power_generation=spec.power.generation)
            await etcd.txn([], self._observed(uuid, observed))

        self.cloud.etcd_call(write)

    def _observed(self, uuid: str, observed: InstanceObserved) -> list[Put]:
        """The observed record and its node's copy, written together as the
        real agent does (nodeagent.scope)."""
        value = observed.to_json()
        return [Put(self.keys.observed_instance(uuid), value),
                Put(self.keys.node_observed_instance(observed.node, uuid), value)]

    def tear_down_instance(self, uuid: str) -> None:
        """What the agent reports once it has removed a deleted instance: its
        observed record says deleted, and in the same transaction the
        instance's interfaces, addresses and MACs are released (with the
        real agent's own rule, nodeagent.net.releases)."""

        async def write(etcd: Etcd) -> None:
            snapshot = await _Snapshot.read(etcd, self.keys)
            spec_kv = snapshot.get(self.keys.instance(uuid))
            assert spec_kv is not None, f"instance {uuid} has no desired record"
            spec = InstanceSpec.from_json(spec_kv.value)
            observed = InstanceObserved(node=spec.node, state="deleted", power_state="off",
                                        applied_power_generation=spec.power.generation)
            await etcd.txn([], [*self._observed(uuid, observed),
                                *releases.of_instance(self.keys, snapshot, spec)])

        self.cloud.etcd_call(write)

    def report_network(self, uuid: str, state: str = "created") -> None:
        """What the network node reports once it built (or removed) a network."""
        observed = NetworkObserved(node=self.node, state=state)
        self.cloud.etcd_call(
            lambda etcd: etcd.put(self.keys.observed_network(uuid), observed.to_json()))

    def tear_down_network(self, uuid: str) -> None:
        """What the network node reports once it removed a deleted network:
        its observed record says deleted, and in the same transaction its
        VXLAN id, addresses, floating addresses and fence are released
        (with the real network node's rule, nodeagent.net.releases)."""

        async def write(etcd: Etcd) -> None:
            mirror = await _Snapshot.read(etcd, self.keys)
            spec_kv = mirror.get(self.keys.network(uuid))
            assert spec_kv is not None, f"network {uuid} has no desired record"
            spec = NetworkSpec.from_json(spec_kv.value)
            assert spec.desired == "deleted", f"network {uuid} is not being deleted"
            observed = NetworkObserved(node=self.node, state="deleted")
            snap = net_snapshot.read(self.keys, mirror)  # type: ignore[arg-type]
            await etcd.txn([], [Put(self.keys.observed_network(uuid), observed.to_json()),
                                *releases.of_network(self.keys, mirror,  # type: ignore[arg-type]
                                                     snap, spec)])

        self.cloud.etcd_call(write)

    def report_blob(self, uuid: str, data: bytes, fmt: str | None = "raw") -> None:
        """What the agent reports once it holds a blob's bytes (``data``)."""
        observed = BlobObserved(state="ready", size=len(data),
                                sha512=hashlib.sha512(data).hexdigest(), done=len(data),
                                total=len(data), format=fmt, virtual_size=len(data))
        self.cloud.etcd_call(
            lambda etcd: etcd.put(self.keys.observed_blob(self.node, uuid), observed.to_json()))
