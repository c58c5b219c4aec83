"""Objects as Shaken Fist's API shows them.

Every key its client reads with ``[]`` is always present (null when there
is nothing to say), or the client fails with a KeyError.

Each shape is declared as a TypedDict beside the function that makes it:
the API's description (portal.api.openapi) is generated from these, and the
fuzzing tests check every answer against it, so the declaration can't drift
from what is sent.
"""

from __future__ import annotations

import time
from typing import Any, NotRequired, TypedDict, cast

from cloudstate.jointokens import JoinToken, Made
from cloudstate.model import Keypair, SecurityRule, Upload
from cloudstate.storage import Version
from portal.accounts.models import Namespace
from portal.accounts.namespaces import trusted_names
from portal.cloud import nodes
from portal.cloud.addresssets import AddressSetRecord
from portal.cloud.catalogue import ArtifactRecord, BlobRecord
from portal.cloud.instances import InstanceRecord
from portal.cloud.jointokens import Invitation
from portal.cloud.networks import NetworkRecord
from portal.cloud.nodes import NodeRecord
from portal.cloud.quotas import Line
from portal.cloud.secgroups import GroupRecord

SCHEMA_VERSION = 1
DEFAULT_MACHINE = "pc"


# --- the shapes --------------------------------------------------------------------------------


class DiskSpecShape(TypedDict):
    size: int
    base: str | None
    bus: str
    type: str
    blob_uuid: NotRequired[str]


class DiskShape(TypedDict):
    device: str
    bus: str
    size: int
    type: str
    blob_uuid: str | None
    snapshot_ignores: bool


class FilteringShape(TypedDict):
    """What an interface's hypervisor has in force of its security groups."""

    state: str  # applied, pending, error, off
    error: str | None
    node: str | None
    applied_groups: list[str]
    applied_at: float | None
    group_names: dict[str, str]  # uuid -> name of the groups it asks for


class InterfaceShape(TypedDict):
    """An instance's NIC (portal.cloud.interfaces.view makes it)."""

    uuid: str
    state: str
    metadata: dict[str, Any]
    version: int
    network_uuid: str
    instance_uuid: str
    macaddr: str
    ipv4: str | None
    order: int
    model: str
    floating: str | None
    security_groups: list[str]
    port_security: bool
    allowed_addresses: list[str]
    filtering: FilteringShape | None
    error_message: str | None


class InstanceShape(TypedDict):
    uuid: str
    name: str
    namespace: str
    cpus: int
    memory: int
    disk_spec: list[DiskSpecShape]
    disks: list[DiskShape]
    ssh_key: str | None
    user_data: str | None
    video: dict[str, Any]
    uefi: bool
    secure_boot: bool
    nvram_template: str | None
    configdrive: str
    machine_type: str
    side_channels: list[str]
    state: str
    power_state: str
    node: str
    console_port: int | None
    vdi_port: int | None
    vdi_tls_port: int | None
    error_message: str | None
    agent_state: str | None
    agent_start_time: float | None
    agent_system_boot_time: float | None
    metadata: dict[str, Any]
    interfaces: list[InterfaceShape]
    created: float
    version: int
    requested_placement: NotRequired[str]


class QuotaLineShape(TypedDict):
    limit: int | None  # None: no limit
    in_use: int
    unit: str
    label: str


class QuotaShape(TypedDict):
    namespace: str
    quota: dict[str, QuotaLineShape]  # keyed by kind: instances, vcpus, memory_mib, ...


class NodeShape(TypedDict):
    uuid: str
    name: str
    fqdn: str
    ip: str
    lastseen: float
    state: str
    maintenance: bool  # sfcloud's: no new instances are placed there
    release: str
    metadata: dict[str, Any]
    version: int
    is_hypervisor: bool
    is_network_node: bool
    is_etcd_master: bool
    is_eventlog_node: bool
    is_database_node: bool
    is_cluster_maintainer: bool
    vcpus: int
    memory_mib: int
    disk_total_gb: int
    disk_free_gb: int
    virt_type: str
    virt_reason: str
    simulated: bool  # sfcloud's: a node over libvirt's test driver, running no guests
    firmware: list[str]


class JoinTokenShape(TypedDict):
    """A join token, without its secret (sfcloud's own)."""
    id: str
    state: str  # unused, used, revoked or expired
    etcd: bool  # the node joins etcd too
    created: float
    expires: float
    created_by: str
    node: str  # who used it, once used
    address: str
    join_state: str  # pending, joining, joined or failed, once used
    message: str


class MadeJoinTokenShape(JoinTokenShape):
    """A token just made: the only time its secret is shown."""
    token: str
    command: str  # what to run, as root, on a new machine with sfcloud-deploy installed
    bootstrap: str  # the same on a bare machine: fetches the join script and checks its SHA-256
    ca_sha256: str


class NamespaceShape(TypedDict):
    name: str
    state: str
    keys: list[str]
    metadata: dict[str, Any]
    trust: dict[str, list[str]]
    version: int


class CopyShape(TypedDict):
    """What one node holds of a blob."""

    state: str
    done: int
    total: int | None
    size: int
    sha512: str | None
    error: str | None


class VersionShape(TypedDict):
    uuid: str
    size: int
    reference_count: int
    depends_on: str | None
    instances: list[str]


class ArtifactShape(TypedDict):
    uuid: str
    name: str
    namespace: str
    artifact_type: str
    source_url: str
    state: str
    shared: bool
    max_versions: int
    index: int
    blob_uuid: NotRequired[str]
    blobs: dict[str, VersionShape]
    metadata: dict[str, Any]
    version: int
    error_message: str | None
    created: float
    instance_uuid: str | None
    device: str | None
    nodes: dict[str, CopyShape]


# Two of a blob's keys are qemu-img's words, with spaces, as in Shaken Fist.
_QemuImgFacts = TypedDict("_QemuImgFacts", {"virtual size": NotRequired[int],
                                            "file format": NotRequired[str]})


class BlobShape(_QemuImgFacts):
    uuid: str
    state: str
    metadata: dict[str, Any]
    version: int
    size: int
    modified: float | None
    fetched_at: float
    depends_on: str | None
    transcodes: dict[str, Any]
    locations: list[str]
    reference_count: int
    sha512: str | None
    last_used: float | None
    instances: list[str]
    origin: str
    node: str | None
    source_url: str | None
    error_message: str | None
    nodes: dict[str, CopyShape]


class IndexedBlobShape(BlobShape):
    """A blob as one version of an artifact (GET .../versions)."""

    index: int


class SnapshotShape(BlobShape):
    artifact_uuid: str
    blob_uuid: str
    index: int
    name: str
    namespace: str
    artifact_type: str
    max_versions: int
    shared: bool
    device: str | None
    created: float
    progress: int | None


class SnapshotTakenShape(TypedDict):
    """One disk of a snapshot just asked for (POST .../snapshot, by device)."""

    artifact_uuid: str
    blob_uuid: str
    source_url: str


class UploadShape(TypedDict):
    uuid: str
    state: str
    metadata: dict[str, Any]
    version: int
    node: str
    namespace: str
    created_at: float
    size: NotRequired[int]


class KeypairShape(TypedDict):
    uuid: str
    name: str
    namespace: str
    public_key: str
    fingerprint: str
    created: float


class NetworkShape(TypedDict):
    uuid: str
    name: str
    namespace: str
    netblock: str
    provide_dhcp: bool
    provide_nat: bool
    provide_dns: bool
    floating_gateway: str | None
    vxlan_id: int | None
    mtu: int | None
    state: str
    error_message: str | None
    metadata: dict[str, Any]
    created: float | None
    version: int
    routed: list[str]
    dns_entries: dict[str, str]


class AddressShape(TypedDict):
    """An address of a network that is not free (GET .../addresses)."""

    address: str
    type: str
    user: list[str] | None
    when: float | None
    comment: str


class PingShape(TypedDict):
    """What ping printed, run from the network's router (GET .../ping/<address>)."""

    stdout: str
    stderr: str


class EventShape(TypedDict):
    type: str
    timestamp: float
    fqdn: str
    duration: float | None
    message: str
    extra: dict[str, Any] | None
    operation: str | None


class TokenShape(TypedDict):
    access_token: str
    token_type: str
    expires_in: int


# --- making them -------------------------------------------------------------------------------


def instance(record: InstanceRecord, interfaces: list[dict[str, Any]] | None = None
             ) -> InstanceShape:
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
        "uefi": spec.uefi,
        "secure_boot": spec.secure_boot,
        "nvram_template": spec.nvram_template.url or spec.nvram_template.artifact_uuid
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


def node(record: NodeRecord) -> NodeShape:
    info = record.info
    return {
        "uuid": info.name,
        "name": info.name,
        "fqdn": info.name,
        "ip": info.ip,
        "lastseen": nodes.seen_at(record),
        "state": record.state,
        "maintenance": record.maintenance,
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
        # Not Shaken Fist's: a node over libvirt's test driver, running no guests.
        "simulated": info.simulated,
        "firmware": ["bios", *info.firmware],
    }


def join_token(record: JoinToken, now: float | None = None) -> JoinTokenShape:
    return {
        "id": record.id,
        "state": record.current_state(time.time() if now is None else now),
        "etcd": record.etcd,
        "created": record.created_at,
        "expires": record.expires_at,
        "created_by": record.created_by,
        "node": record.node,
        "address": record.address,
        "join_state": record.join_state,
        "message": record.message,
    }


def made_join_token(made: Made, invitation: Invitation) -> MadeJoinTokenShape:
    return {**join_token(made.record), "token": made.token, "command": invitation.command,
            "bootstrap": invitation.bootstrap, "ca_sha256": invitation.ca_sha256}


def namespace(record: Namespace) -> NamespaceShape:
    return {
        "name": record.name,
        "state": record.state,
        "keys": sorted(key.name for key in record.keys.all()),
        "metadata": record.metadata,
        "trust": {"full": trusted_names(record)},
        "version": SCHEMA_VERSION,
    }


def quota(namespace: str, lines: list[Line]) -> QuotaShape:
    """A namespace's quotas: each kind's limit (null: none), its use, the
    unit of both, and what pages call it."""
    return {"namespace": namespace,
            "quota": {line.name: cast(QuotaLineShape, line.as_json()) for line in lines}}


def artifact(record: ArtifactRecord) -> ArtifactShape:
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


def _version(blob_record: BlobRecord) -> VersionShape:
    return {"uuid": blob_record.uuid, "size": blob_record.facts.size or 0,
            "reference_count": blob_record.references, "depends_on": None,
            "instances": list(blob_record.instances)}


def _copies(blob_record: BlobRecord) -> dict[str, CopyShape]:
    return {
        node: {"state": copy.state, "done": copy.done, "total": copy.total, "size": copy.size,
               "sha512": copy.sha512, "error": copy.error}
        for node, copy in sorted(blob_record.copies.items())
    }


def blob(record: BlobRecord) -> BlobShape:
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


def snapshot(record: ArtifactRecord, version: Version) -> SnapshotShape:
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


def upload(item: Upload, size: int | None = None) -> UploadShape:
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


def keypair(item: Keypair) -> KeypairShape:
    return {
        "uuid": item.uuid,
        "name": item.name,
        "namespace": item.namespace,
        "public_key": item.public_key,
        "fingerprint": item.fingerprint,
        "created": item.created_at,
    }


def network(record: NetworkRecord) -> NetworkShape:
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
