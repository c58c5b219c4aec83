"""Cloud objects written straight into a test cloud's etcd, for tests about
who may see and change them rather than about guests.

The instances are placed on a node that does not exist, so no agent acts
on them and no guest boots; the API, pages and websockets treat them like
any other.
"""

from __future__ import annotations

import uuid as uuidlib

from cloudstate.etcd import Put
from cloudstate.model import Disk, Image, InstanceObserved, InstanceSpec, InterfaceSpec
from tests.support.cloud import Cloud

GHOST_NODE = "ghost-node"
PUBLIC_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKu4Sb8bV0dSRiGSI7qHnHjYw5uCqbH5zN2q8cYbZ4bh "
              "test@host")


def put_instance(cloud: Cloud, namespace: str, name: str, node: str = GHOST_NODE) -> str:
    spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name=name, namespace=namespace, cpus=1,
                        memory=128, disks=[Disk(device="vda", size_gb=1)], node=node)
    cloud.etcd_call(lambda etcd: etcd.put(cloud.keys.instance(spec.uuid), spec.to_json()))
    return spec.uuid


def mark_torn_down(cloud: Cloud, uuid: str, node: str = GHOST_NODE) -> None:
    """What the instance's node would report once it has removed it."""
    observed = InstanceObserved(node=node, state="deleted", power_state="off")
    cloud.etcd_call(lambda etcd: etcd.put(cloud.keys.observed_instance(uuid), observed.to_json()))


def put_image(cloud: Cloud, namespace: str, name: str) -> str:
    """An image record no node holds or fetches (not marked for pre-caching)."""
    image = Image(uuid=str(uuidlib.uuid4()), name=name, namespace=namespace,
                  source_url=f"https://images.invalid/{name}.qcow2")
    keys = cloud.keys

    async def write(etcd):  # type: ignore[no-untyped-def]
        await etcd.txn([], [Put(keys.image(image.uuid), image.to_json()),
                            Put(keys.image_name(namespace, name), image.uuid)])

    cloud.etcd_call(write)
    return image.uuid


def put_interface(cloud: Cloud, namespace: str, instance_uuid: str, network_uuid: str) -> str:
    """A NIC without an address, recorded on an instance of the ghost node."""
    iface = InterfaceSpec(uuid=str(uuidlib.uuid4()), network_uuid=network_uuid,
                          instance_uuid=instance_uuid, namespace=namespace, order=0,
                          macaddr="02:00:00:00:00:aa", ipv4=None)
    cloud.etcd_call(lambda etcd: etcd.put(cloud.keys.interface(iface.uuid), iface.to_json()))
    return iface.uuid
