"""Objects as Shaken Fist's API shows them.

Every key its client reads with ``[]`` is always present (null when there
is nothing to say), or the client fails with a KeyError.
"""

from __future__ import annotations

import time
from typing import Any

from cloudstate.model import Keypair, Upload
from cloudstate.storage import Version
from portal.accounts.models import Namespace
from portal.cloud.catalogue import ArtifactRecord, BlobRecord
from portal.cloud.instances import InstanceRecord
from portal.cloud.networks import NetworkRecord
from portal.cloud.nodes import NodeRecord

SCHEMA_VERSION = 1


def instance(record: InstanceRecord, interfaces: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    spec = record.spec
    disks = [
        {"device": d.device, "bus": d.bus, "size": d.size_gb, "type": d.type,
         "blob_uuid": d.source.blob_uuid if d.source else None, "snapshot_ignores": False}
        for d in spec.disks
    ]
    return {
        "uuid": spec.uuid,
        "name": spec.name,
        "namespace": spec.namespace,
        "cpus": spec.cpus,
        "memory": spec.memory,
        "disk_spec": [
            {"size": d.size_gb, "base": d.base, "bus": d.bus, "type": d.type,
             **({"blob_uuid": d.source.blob_uuid} if d.source else {})}
            for d in spec.disks
        ],
        "disks": disks,
        "ssh_key": spec.ssh_key,
        "user_data": spec.user_data,
        "video": spec.video,
        "uefi": False,
        "secure_boot": False,
        "nvram_template": None,
        "configdrive": spec.configdrive,
        "machine_type": "pc",
        "side_channels": [],
        "state": record.state,
        "power_state": record.power_state,
        "node": spec.node,
        "console_port": None,
        "vdi_port": None,
        "vdi_tls_port": None,
        "error_message": record.error,
        "agent_state": None,
        "agent_start_time": None,
        "agent_system_boot_time": None,
        "metadata": spec.metadata,
        "interfaces": interfaces or [],
        "created": spec.created_at,
        "version": SCHEMA_VERSION,
        **({"requested_placement": spec.requested_placement}
           if spec.requested_placement else {}),
    }


def node(record: NodeRecord) -> dict[str, Any]:
    info = record.info
    return {
        "uuid": info.name,
        "name": info.name,
        "fqdn": info.name,
        "ip": info.ip,
        "lastseen": time.time() if record.alive else info.started_at,
        "state": record.state,
        "release": info.release,
        "metadata": {},
        "version": SCHEMA_VERSION,
        "is_hypervisor": info.is_hypervisor,
        "is_network_node": info.is_network_node,
        "is_etcd_master": False,
        "is_eventlog_node": False,
        "is_database_node": False,
        "is_cluster_maintainer": False,
        "vcpus": info.vcpus,
        "memory_mib": info.memory_mib,
        "disk_total_gb": info.disk_total_gb,
        "disk_free_gb": info.disk_free_gb,
        "virt_type": info.virt_type,
        "virt_reason": info.virt_reason,
        # Not Shaken Fist's: a node over libvirt's test driver, running no guests.
        "simulated": info.simulated,
    }


def namespace(record: Namespace) -> dict[str, Any]:
    return {
        "name": record.name,
        "state": record.state,
        "keys": sorted(key.name for key in record.keys.all()),
        "metadata": record.metadata,
        # Shaken Fist's trusts between namespaces are not offered.
        "trust": {"full": []},
        "version": SCHEMA_VERSION,
    }


def artifact(record: ArtifactRecord) -> dict[str, Any]:
    """An artifact as Shaken Fist shows one: its versions shown (``blobs``,
    keyed by index), the newest one's ``index`` and ``blob_uuid`` (none
    yet: index 0 and no blob_uuid). ``nodes`` (sfcloud's) says what each
    node holds of the blob being made, or of the newest."""
    spec = record.spec
    newest = record.found.newest
    current = record.current
    return {
        "uuid": spec.uuid,
        "name": spec.name,
        "namespace": spec.namespace,
        "artifact_type": spec.type,
        "source_url": spec.source_url,
        "state": record.state,
        "shared": spec.shared,
        "max_versions": spec.max_versions,
        "index": newest.index if newest else 0,
        **({"blob_uuid": newest.blob_uuid} if newest else {}),
        "blobs": {str(v.index): _version(record.blobs[v.blob_uuid])
                  for v in record.found.shown if v.blob_uuid in record.blobs},
        "metadata": spec.metadata,
        "version": SCHEMA_VERSION,
        "error_message": record.error,
        "created": spec.created_at,
        "instance_uuid": spec.instance_uuid,
        "device": spec.device,
        "nodes": _copies(current) if current else {},
    }


def _version(blob_record: BlobRecord) -> dict[str, Any]:
    return {"uuid": blob_record.uuid, "size": blob_record.facts.size or 0,
            "reference_count": blob_record.references, "depends_on": None,
            "instances": list(blob_record.instances)}


def _copies(blob_record: BlobRecord) -> dict[str, Any]:
    return {
        node: {"state": copy.state, "done": copy.done, "total": copy.total, "size": copy.size,
               "sha512": copy.sha512, "error": copy.error}
        for node, copy in sorted(blob_record.copies.items())
    }


def blob(record: BlobRecord) -> dict[str, Any]:
    """A blob as Shaken Fist shows one (the keys with spaces are qemu-img's
    words, as there, and absent when qemu-img has not described it yet: the
    client reads them with a default); ``transcodes`` is empty: the qcow2
    each node makes of a blob is not a blob of its own here."""
    spec, facts = record.spec, record.facts
    made = record.copies.get(spec.node or "")
    return {
        "uuid": spec.uuid,
        "state": record.state,
        "metadata": spec.metadata,
        "version": SCHEMA_VERSION,
        "size": facts.size or 0,
        "modified": facts.modified,
        "fetched_at": made.updated_at if made and made.state == "ready" else spec.created_at,
        "depends_on": None,
        "transcodes": {},
        "locations": record.locations,
        "reference_count": record.references,
        "sha512": facts.sha512,
        "last_used": None,
        **({"virtual size": facts.virtual_size} if facts.virtual_size is not None else {}),
        **({"file format": facts.format} if facts.format is not None else {}),
        "instances": list(record.instances),
        "origin": spec.origin,
        "node": spec.node,
        "source_url": spec.source_url,
        "error_message": record.error,
        "nodes": _copies(record),
    }


def snapshot(record: ArtifactRecord, version: Version) -> dict[str, Any]:
    """One version of one disk's snapshot, as GET /instances/<ref>/snapshot
    lists them: the artifact merged with the blob, ``uuid`` the artifact's
    and ``state`` the blob's, as in Shaken Fist, with the disk and when."""
    spec = record.spec
    blob_record = record.blobs[version.blob_uuid]
    node = blob_record.spec.node or ""
    return {
        **blob(blob_record),
        "uuid": spec.uuid,
        "artifact_uuid": spec.uuid,
        "blob_uuid": blob_record.uuid,
        "index": version.index,
        "name": spec.name,
        "namespace": spec.namespace,
        "artifact_type": spec.type,
        "source_url": spec.source_url,
        "max_versions": spec.max_versions,
        "shared": spec.shared,
        "device": spec.device,
        "created": blob_record.spec.created_at,
        "state": blob_record.state,
        "progress": blob_record.progress(node),
    }


def upload(item: Upload, size: int | None = None) -> dict[str, Any]:
    return {
        "uuid": item.uuid,
        "state": "created",
        "metadata": {},
        "version": SCHEMA_VERSION,
        "node": item.node,
        "namespace": item.namespace,
        "created_at": item.created_at,
        **({"size": size} if size is not None else {}),
    }


def keypair(item: Keypair) -> dict[str, Any]:
    return {
        "uuid": item.uuid,
        "name": item.name,
        "namespace": item.namespace,
        "public_key": item.public_key,
        "fingerprint": item.fingerprint,
        "created": item.created_at,
    }


def network(record: NetworkRecord) -> dict[str, Any]:
    spec = record.spec
    return {
        "uuid": spec.uuid,
        "name": spec.name,
        "namespace": spec.namespace,
        "netblock": spec.netblock,
        "provide_dhcp": spec.provide_dhcp,
        "provide_nat": spec.provide_nat,
        "provide_dns": spec.provide_dns,
        "floating_gateway": spec.floating_gateway,
        "vxlan_id": spec.vxid,
        "mtu": spec.mtu,
        "state": record.state,
        "error_message": record.error,
        "metadata": spec.metadata,
        "created": spec.created_at,
        "version": SCHEMA_VERSION,
    }
