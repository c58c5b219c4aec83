"""Objects as Shaken Fist's API shows them.

Every key its client reads with ``[]`` is always present (null when there
is nothing to say), or the client fails with a KeyError.
"""

from __future__ import annotations

from typing import Any

from cloudstate.model import Keypair
from portal.accounts.models import Namespace
from portal.accounts.namespaces import trusted_names
from portal.cloud import nodes
from portal.cloud.artifacts import ImageRecord
from portal.cloud.instances import InstanceRecord
from portal.cloud.networks import NetworkRecord
from portal.cloud.nodes import NodeRecord

SCHEMA_VERSION = 1
DEFAULT_MACHINE = "pc"


def instance(record: InstanceRecord, interfaces: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    spec = record.spec
    disks = [
        {"device": d.device, "bus": d.bus, "size": d.size_gb, "type": d.type,
         "blob_uuid": d.source.image_uuid if d.source else None, "snapshot_ignores": False}
        for d in spec.disks
    ]
    return {
        "uuid": spec.uuid,
        "name": spec.name,
        "namespace": spec.namespace,
        "cpus": spec.cpus,
        "memory": spec.memory,
        "disk_spec": [
            {"size": d.size_gb, "base": d.base, "bus": d.bus, "type": d.type}
            for d in spec.disks
        ],
        "disks": disks,
        "ssh_key": spec.ssh_key,
        "user_data": spec.user_data,
        "video": spec.video,
        "uefi": spec.uefi,
        "secure_boot": spec.secure_boot,
        "nvram_template": spec.nvram_template.image_uuid or spec.nvram_template.url
        if spec.nvram_template else None,
        "configdrive": spec.configdrive,
        # Instances placed before the machine was recorded have the default.
        "machine_type": spec.machine_type or DEFAULT_MACHINE,
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
        "lastseen": nodes.seen_at(record),
        "state": record.state,
        "release": info.release,
        "metadata": record.spec.metadata,
        "version": SCHEMA_VERSION,
        "is_hypervisor": info.is_hypervisor,
        "is_network_node": info.is_network_node,
        # etcd, the event log, the database and cluster upkeep are not a
        # node's job in sfcloud (the portal does them), so no node is one.
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
        "firmware": ["bios", *info.firmware],
    }


def namespace(record: Namespace) -> dict[str, Any]:
    return {
        "name": record.name,
        "state": record.state,
        "keys": sorted(key.name for key in record.keys.all()),
        "metadata": record.metadata,
        "trust": {"full": trusted_names(record)},
        "version": SCHEMA_VERSION,
    }


def artifact(record: ImageRecord) -> dict[str, Any]:
    """An image as Shaken Fist shows an artifact: one version (its blob)."""
    image = record.image
    size = record.size
    blobs = {} if size is None else {"1": {
        "uuid": image.uuid, "size": size, "reference_count": len(record.used_by),
        "depends_on": None, "instances": list(record.used_by),
    }}
    return {
        "uuid": image.uuid,
        "name": image.name,
        "namespace": image.namespace,
        "artifact_type": image.kind,
        "source_url": image.source_url,
        "state": record.state,
        "shared": image.shared,
        "max_versions": 1,
        "index": 1,
        "blob_uuid": image.uuid if size is not None else None,
        "blobs": blobs,
        "metadata": {},
        "version": SCHEMA_VERSION,
        "error_message": record.error,
        "created": image.created_at,
        "instance_uuid": image.instance_uuid,
        "device": image.device,
        "nodes": {
            node: {"state": observed.state, "done": observed.done, "total": observed.total,
                   "size": observed.size, "sha256": observed.sha256, "error": observed.error}
            for node, observed in sorted(record.by_node.items())
        },
    }


def snapshot(record: ImageRecord) -> dict[str, Any]:
    """One disk's snapshot as GET /instances/<ref>/snapshot lists it."""
    image = record.image
    node = record.by_node.get(image.node or "")
    return {
        "uuid": image.uuid,
        "blob_uuid": image.uuid,
        "artifact_uuid": image.uuid,
        "name": image.name,
        "device": image.device,
        "created": image.created_at,
        "state": record.state,
        "source_url": image.source_url,
        "node": image.node,
        "size": record.size,
        "progress": record.progress(image.node or ""),
        "error_message": node.error if node else None,
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
        # sfcloud's own: what `network add-routed` routed here, and the extra
        # names its DNS answers.
        "routed": spec.routed,
        "dns_entries": spec.dns_entries,
    }
