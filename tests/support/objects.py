"""Cloud objects written straight into a test cloud's etcd, for tests about
who may see and change them rather than about guests.

The instances are placed on a node that does not exist, so no agent acts
on them and no guest boots; the API, pages and websockets treat them like
any other. The cloud is a whole one (tests.support.cloud) or the portal in
process (tests.support.inprocess).
"""

from __future__ import annotations

import hashlib
import uuid as uuidlib
from typing import Any, Protocol

from cloudstate.etcd import Put
from cloudstate.keys import Keys
from cloudstate.model import Artifact, Blob, Disk, InstanceObserved, InstanceSpec, InterfaceSpec


class Cloud(Protocol):
    """What these need of a test cloud: its key layout and a way to run an
    etcd call against it."""

    keys: Keys

    def etcd_call(self, fn: Any) -> Any: ...

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
    """An image artifact whose one version is a blob of the ghost node:
    no node holds it or fetches it (it is not marked for pre-caching)."""
    url = f"https://images.invalid/{name}.qcow2"
    blob = Blob(uuid=str(uuidlib.uuid4()), namespace=namespace, origin="fetch", node=GHOST_NODE,
                source_url=url)
    return _put_artifact(cloud, namespace, name, url, blob)


def put_uploaded(cloud: Cloud, namespace: str, name: str, node: str,
                 data: bytes) -> tuple[str, str]:
    """(artifact, blob) of ``data`` as though uploaded to ``node`` and made
    the artifact ``name``: the records only. The node's report that it
    holds the bytes is the test's to write (FakeAgent.report_blob)."""
    blob = Blob(uuid=str(uuidlib.uuid4()), namespace=namespace, origin="upload", node=node,
                size=len(data), sha512=hashlib.sha512(data).hexdigest())
    url = f"sf://upload/{namespace}/{name}"
    return _put_artifact(cloud, namespace, name, url, blob), blob.uuid


def _put_artifact(cloud: Cloud, namespace: str, name: str, url: str, blob: Blob) -> str:
    """An image artifact of ``url`` whose one version is ``blob``, recorded
    as the portal records them; returns the artifact's UUID."""
    artifact = Artifact(uuid=str(uuidlib.uuid4()), name=name, namespace=namespace,
                        source_url=url).with_version(blob.uuid)
    keys = cloud.keys

    async def write(etcd):  # type: ignore[no-untyped-def]
        await etcd.txn([], [Put(keys.artifact(artifact.uuid), artifact.to_json()),
                            Put(keys.artifact_url(namespace, "image", url), artifact.uuid),
                            Put(keys.blob(blob.uuid), blob.to_json())])

    cloud.etcd_call(write)
    return artifact.uuid


def put_interface(cloud: Cloud, namespace: str, instance_uuid: str, network_uuid: str) -> str:
    """A NIC without an address, recorded on an instance of the ghost node."""
    iface = InterfaceSpec(uuid=str(uuidlib.uuid4()), network_uuid=network_uuid,
                          instance_uuid=instance_uuid, namespace=namespace, order=0,
                          macaddr="02:00:00:00:00:aa", ipv4=None)
    cloud.etcd_call(lambda etcd: etcd.put(cloud.keys.interface(iface.uuid), iface.to_json()))
    return iface.uuid
