"""Objects as Shaken Fist's API shows them.

Every key its client reads with ``[]`` is always present (null when there
is nothing to say), or the client fails with a KeyError.
"""

from __future__ import annotations

import time
from typing import Any

from cloudstate.model import Keypair, SecurityRule
from portal.accounts.models import Namespace
from portal.cloud.addresssets import AddressSetRecord
from portal.cloud.artifacts import ImageRecord
from portal.cloud.instances import InstanceRecord
from portal.cloud.networks import NetworkRecord
from portal.cloud.nodes import NodeRecord
from portal.cloud.secgroups import GroupRecord

SCHEMA_VERSION = 1


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
    }


def security_rule(rule: SecurityRule, names: dict[str, str]) -> dict[str, Any]:
    """A rule; ``names`` gives the names of the groups and address sets it may name."""
    remote: dict[str, Any] | None = None
    if rule.remote_cidrs:
        remote = {"cidrs": list(rule.remote_cidrs)}
    elif rule.remote_group:
        remote = {"group": rule.remote_group, "name": names.get(rule.remote_group)}
    elif rule.remote_address_set:
        remote = {"address_set": rule.remote_address_set,
                  "name": names.get(rule.remote_address_set)}
    return {
        "uuid": rule.uuid,
        "direction": rule.direction,
        "ethertype": rule.ethertype,
        "protocol": rule.protocol,
        "ports": rule.ports,
        "icmp_type": rule.icmp_type,
        "icmp_code": rule.icmp_code,
        "remote": remote,
        "description": rule.description,
        "created": rule.created_at,
    }


def security_group(record: GroupRecord, names: dict[str, str],
                   attached: int) -> dict[str, Any]:
    spec = record.spec
    return {
        "uuid": spec.uuid,
        "name": spec.name,
        "namespace": spec.namespace,
        "description": spec.description,
        "stateful": True,
        "rules": [security_rule(rule, names) for rule in spec.rules],
        "state": record.state,
        "generation": spec.generation,
        "attached_interfaces": attached,
        "metadata": spec.metadata,
        "created": spec.created_at,
        "version": SCHEMA_VERSION,
    }


def address_set(record: AddressSetRecord) -> dict[str, Any]:
    spec = record.spec
    return {
        "uuid": spec.uuid,
        "name": spec.name,
        "namespace": spec.namespace,
        "description": spec.description,
        "cidrs": list(spec.cidrs),
        "state": record.state,
        "generation": spec.generation,
        "metadata": spec.metadata,
        "created": spec.created_at,
        "version": SCHEMA_VERSION,
    }
