"""Objects as Shaken Fist's API shows them.

Every key its client reads with ``[]`` is always present (null when there
is nothing to say), or the client fails with a KeyError.
"""

from __future__ import annotations

import time
from typing import Any

from portal.accounts.models import Namespace
from portal.cloud.instances import InstanceRecord
from portal.cloud.nodes import NodeRecord

SCHEMA_VERSION = 1


def instance(record: InstanceRecord) -> dict[str, Any]:
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
        "interfaces": [],
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
