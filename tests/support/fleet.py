"""Many instances at once, written straight into a test cloud's etcd (as
tests.support.objects writes one): for the lists that page, sort, filter and
search, and for measuring them with thousands of rows.

Each instance may have tags, a NIC with an address (and a floating one) and
an observed state, so every column and filter of the list has something to
show. Nothing acts on them: their node is named but no agent runs there.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from dataclasses import dataclass, field

from cloudstate.etcd import Put
from cloudstate.model import Disk, InstanceObserved, InstanceSpec, InterfaceSpec
from tests.support.objects import Cloud

BATCH = 64  # puts per transaction, within etcd's default limit of 128 operations


@dataclass(frozen=True)
class Guest:
    name: str
    node: str = "ghost-node"
    tags: tuple[str, ...] = ()
    address: str | None = None  # its eth0's, on a made-up network
    floating: str | None = None
    power_state: str | None = None  # observed "created" in this power state; None: creating
    created_at: float = field(default_factory=time.time)
    cpus: int = 1
    memory: int = 128


def put_fleet(cloud: Cloud, namespace: str, guests: list[Guest]) -> dict[str, str]:
    """Write them all; returns name -> uuid."""
    keys = cloud.keys
    network = str(uuidlib.uuid4())
    puts: list[Put] = []
    made = {}
    for guest in guests:
        uuid = str(uuidlib.uuid4())
        made[guest.name] = uuid
        nics = []
        if guest.address is not None:
            nic = InterfaceSpec(uuid=str(uuidlib.uuid4()), network_uuid=network,
                                instance_uuid=uuid, namespace=namespace, order=0,
                                macaddr="02:00:00:00:00:01", ipv4=guest.address,
                                floating=guest.floating)
            nics.append(nic.uuid)
            puts.append(Put(keys.interface(nic.uuid), nic.to_json()))
        spec = InstanceSpec(uuid=uuid, name=guest.name, namespace=namespace, cpus=guest.cpus,
                            memory=guest.memory,
                            disks=[Disk(device="vda", size_gb=1, base="demo")],
                            node=guest.node, created_at=guest.created_at,
                            metadata={"tags": list(guest.tags)} if guest.tags else {},
                            interfaces=nics)
        puts.append(Put(keys.instance(uuid), spec.to_json()))
        if guest.power_state is not None:
            observed = InstanceObserved(node=guest.node, state="created",
                                        power_state=guest.power_state,
                                        applied_power_generation=spec.power.generation)
            puts.append(Put(keys.observed_instance(uuid), observed.to_json()))

    async def write(etcd):  # type: ignore[no-untyped-def]
        for start in range(0, len(puts), BATCH):
            await etcd.txn([], puts[start:start + BATCH])

    cloud.etcd_call(write)
    return made
