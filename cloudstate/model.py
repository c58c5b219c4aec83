"""The objects kept in etcd, as dataclasses with a JSON form.

Desired state (written by the portal) and observed state (written by the
agent that owns the object) are separate records with separate writers; the
API shows both, merged. Records carry a schema ``version`` and unknown keys
are ignored when read, so a newer writer does not break an older reader.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Record")


class Record:
    """JSON round-tripping for the dataclasses below."""

    SCHEMA: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        data["version"] = self.SCHEMA
        return data

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        kwargs = {}
        for name, value in data.items():
            if name not in known:
                continue
            nested = _NESTED.get((cls.__name__, name))
            if nested is not None and value is not None:
                value = [nested.from_dict(v) for v in value] if isinstance(value, list) \
                    else nested.from_dict(value)
            kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_json(cls: type[T], raw: bytes | str) -> T:
        return cls.from_dict(json.loads(raw))

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


# --- instances ---------------------------------------------------------------


@dataclass(frozen=True)
class DiskSource(Record):
    """Where a disk's initial contents come from, resolved by the portal at
    create time so the agent needs no lookup: a blob (fixed bytes), and, for
    the person reading the instance, the artifact and URL it was found by."""

    blob_uuid: str = ""  # empty only in records of releases before blobs
    url: str = ""
    artifact_uuid: str | None = None


@dataclass(frozen=True)
class Disk(Record):
    device: str  # vda, vdb, ...
    size_gb: int
    base: str | None = None  # as the user gave it: "demo", a URL, label:x, or None (blank)
    source: DiskSource | None = None
    bus: str = "virtio"
    type: str = "disk"


@dataclass(frozen=True)
class PowerIntent(Record):
    """The last power action asked for. The agent applies each generation
    once and then leaves the domain alone, so a guest that powers itself off
    stays off instead of being restarted behind the user's back."""

    generation: int = 1
    action: str = "on"  # on, off, pause, unpause, rebootsoft, reboothard


@dataclass(frozen=True)
class InstanceSpec(Record):
    uuid: str
    name: str
    namespace: str
    cpus: int
    memory: int  # MiB
    disks: list[Disk]
    node: str
    created_at: float = field(default_factory=time.time)
    desired: str = "active"  # active or deleted
    deleted_at: float | None = None
    power: PowerIntent = field(default_factory=PowerIntent)
    ssh_key: str | None = None
    user_data: str | None = None  # base64, as Shaken Fist's API carries it
    metadata: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=lambda: {"model": "cirrus", "memory": 16384})
    configdrive: str = "openstack-disk"
    requested_placement: str | None = None
    # The name of the namespace's keypair ssh_key came from, if it did: the
    # config drive offers the key under this name.
    keypair: str | None = None
    # Its NICs' interface uuids, in order: the first is eth0.
    interfaces: list[str] = field(default_factory=list)
    # Boot firmware, as Shaken Fist's create asks for it: UEFI (OVMF) instead
    # of BIOS, secure boot on top (which needs machine q35), and the image
    # whose contents start the instance's UEFI variable store.
    uefi: bool = False
    secure_boot: bool = False
    nvram_template: DiskSource | None = None
    # The QEMU machine, chosen at placement; None for instances placed before
    # it was recorded (they get their node's).
    machine_type: str | None = None

    @property
    def domain_name(self) -> str:
        return f"sfcloud-{self.uuid}"

    @property
    def disk_total_gb(self) -> int:
        return sum(d.size_gb for d in self.disks)

    @property
    def blob_uuids(self) -> list[str]:
        """The blobs it starts from, one entry per use: each disk's base and
        its NVRAM template (a record from before blobs names none)."""
        sources = [d.source for d in self.disks] + [self.nvram_template]
        return [s.blob_uuid for s in sources if s is not None and s.blob_uuid]


@dataclass(frozen=True)
class InstanceObserved(Record):
    node: str
    state: str = "creating"  # creating, created, error, deleted
    power_state: str = "initial"  # initial, on, off, paused, crashed
    error: str | None = None
    applied_power_generation: int = 0
    # The spec revision that failed: not retried until the spec changes.
    failed_spec_revision: int = 0
    updated_at: float = field(default_factory=time.time)


# --- nodes -------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo(Record):
    name: str
    ip: str
    vcpus: int
    memory_mib: int
    disk_total_gb: int
    disk_free_gb: int
    virt_type: str  # "kvm", "qemu" (software emulation) or "test" (simulated)
    machine: str
    virt_reason: str = ""
    release: str = ""
    is_hypervisor: bool = True
    is_network_node: bool = True
    started_at: float = field(default_factory=time.time)
    # The agent's authenticated server (console relays, console logs) on ``ip``; 0: none.
    agent_port: int = 0
    # A simulated hypervisor (libvirt's test driver, nodeagent.simulated): it
    # runs no guests, and only a portal placing on simulated nodes uses it.
    simulated: bool = False
    # The boot firmware this node offers guests beyond BIOS ("uefi",
    # "secure-boot"): only such a node is given an instance that asks for it.
    firmware: list[str] = field(default_factory=list)


def readable_node(key: str, value: bytes) -> NodeInfo | None:
    """The node record at ``key``, or None when it can't be shown: not JSON,
    a field missing or of the wrong type, or another node's name. Such a
    record (written by hand, or by a release that spelt it otherwise) is left
    out of every list of nodes instead of failing the whole list; the agent
    that owns it writes it whole again at its next start or refresh."""
    try:
        info = NodeInfo.from_json(value)
    except (ValueError, TypeError, AttributeError):
        return None
    numbers = (info.vcpus, info.memory_mib, info.disk_total_gb, info.disk_free_gb,
               info.agent_port)
    if info.name != key.rsplit("/", 1)[-1] or not isinstance(info.ip, str) \
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers) \
            or not isinstance(info.started_at, (int, float)) \
            or not isinstance(info.firmware, list) \
            or not all(isinstance(name, str) for name in info.firmware) \
            or not all(isinstance(text, str) for text in (info.virt_type, info.machine,
                                                           info.virt_reason, info.release)):
        return None
    return info


@dataclass(frozen=True)
class NodeSpec(Record):
    """What the portal keeps about a node (its agent writes NodeInfo, the
    portal this): the node's metadata. Absent until someone sets some."""

    name: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        """Nodes belong to the cloud: only the system namespace sees them."""
        return "system"


# --- artifacts, blobs, uploads ------------------------------------------------
# Shaken Fist's storage model. A blob is fixed bytes (an image as fetched, a
# snapshot, an upload), made on one node and copied to others as they need
# it. An artifact is what people name and share: a list of versions, each a
# blob. A label is an artifact whose versions are blobs of other artifacts.


@dataclass(frozen=True)
class Artifact(Record):
    """An image, snapshot, label or other file, with its versions.

    ``versions`` maps each version's index (a string: JSON's keys are) to
    its blob, including blobs still being made; what the API shows of them
    is derived (cloudstate.storage). Indexes only grow: a version deleted
    leaves a gap, as in Shaken Fist.
    """

    uuid: str
    name: str
    namespace: str
    source_url: str
    type: str = "image"  # image, snapshot, label or other
    shared: bool = False
    max_versions: int = 3
    versions: dict[str, str] = field(default_factory=dict)
    last_index: int = 0
    # Copied onto every hypervisor ahead of time (an "artifact cache" request).
    precache: bool = False
    desired: str = "active"  # active or deleted
    instance_uuid: str | None = None  # a snapshot: of which instance
    device: str | None = None  # a snapshot: of which disk
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    deleted_at: float | None = None

    def with_version(self, blob_uuid: str) -> Artifact:
        index = self.last_index + 1
        return self.replace(versions={**self.versions, str(index): blob_uuid},
                            last_index=index)


@dataclass(frozen=True)
class Blob(Record):
    """Fixed bytes, made once on ``node`` and never changed.

    ``origin`` says how: ``fetch`` (``node`` downloads ``source_url``),
    ``snapshot`` (``node`` copies ``instance_uuid``'s ``device``), ``upload``
    (already on ``node``, sealed from an upload) or ``file`` (a file an
    operator registered, such as the demo image: every node reads
    ``source_url`` itself, so ``node`` is None). Every other node copies the
    bytes from a node that holds them. ``size`` and ``sha512`` are known up
    front for uploads, else from the nodes' observed records. A fetch that
    ``replaces`` an artifact's newest version (the URL cached again) is
    only a new version if the file changed (its length or Last-Modified).
    """

    uuid: str
    namespace: str  # whose request made it
    origin: str
    node: str | None
    source_url: str | None = None
    replaces: str | None = None
    instance_uuid: str | None = None
    device: str | None = None
    size: int | None = None
    sha512: str | None = None
    desired: str = "active"  # active or deleted
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    deleted_at: float | None = None

    @property
    def name(self) -> str:
        """Blobs have no names: their UUID stands in (in audit rows, say)."""
        return self.uuid


@dataclass(frozen=True)
class BlobObserved(Record):
    """One node's copy of a blob's bytes (or the blob being made there)."""

    state: str  # downloading, creating, ready, error
    size: int = 0
    sha512: str | None = None
    error: str | None = None
    # What qemu-img makes of the bytes, for the blob's view: its format
    # (anything is "raw" to it) and the disk size a guest would see.
    format: str | None = None
    virtual_size: int | None = None
    modified: float | None = None  # Last-Modified of a fetch
    updated_at: float = field(default_factory=time.time)
    done: int = 0  # bytes so far, while downloading or copying
    total: int | None = None  # bytes expected, when known


@dataclass(frozen=True)
class Upload(Record):
    """Bytes being sent to ``node`` a chunk at a time, until they become a
    blob (POST /artifacts/upload/<name>). They belong to ``namespace``."""

    uuid: str
    namespace: str
    node: str
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Keypair(Record):
    """An ssh public key a namespace keeps, to put into new instances."""

    uuid: str
    name: str
    namespace: str
    public_key: str
    fingerprint: str  # SHA256:<base64>, as ssh-keygen -l shows it
    created_at: float = field(default_factory=time.time)


# --- networks ----------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSpec(Record):
    """A virtual network: one VXLAN id, one address pool, one router."""

    uuid: str
    name: str
    namespace: str
    netblock: str  # normalised CIDR, e.g. "10.0.0.0/24"
    vxid: int
    provide_dhcp: bool = True
    provide_nat: bool = True
    provide_dns: bool = False
    # The address this network's traffic leaves by, from the floating pool;
    # None when the cloud has no floating network or NAT was not asked for.
    floating_gateway: str | None = None
    mtu: int = 1450
    created_at: float = field(default_factory=time.time)
    desired: str = "active"  # active or deleted
    deleted_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # Addresses of the floating pool routed to this network as a whole (a
    # guest configures one itself), each reserved in the floating pool.
    routed: list[str] = field(default_factory=list)
    # Names the network's DNS answers beyond its instances': name -> address.
    dns_entries: dict[str, str] = field(default_factory=dict)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.netblock)

    @property
    def router(self) -> str:
        """The network node's address on the network: its first host."""
        return str(self.network.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    @property
    def netmask(self) -> str:
        return str(self.network.netmask)


@dataclass(frozen=True)
class NetworkObserved(Record):
    """What the network node has built for a network."""

    node: str
    state: str = "created"  # created, error, deleted
    error: str | None = None
    # Interfaces whose DHCP entry (and floating address) is in place; an
    # instance is only started once all of its interfaces are listed here.
    applied: list[str] = field(default_factory=list)
    # NAT and floating addresses are in place (an uplink is configured).
    egress: bool = False
    updated_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class InterfaceSpec(Record):
    """One NIC of an instance, on one network."""

    uuid: str
    network_uuid: str
    instance_uuid: str
    namespace: str
    order: int  # 0 is eth0
    macaddr: str
    ipv4: str | None  # None: the NIC has no address on the network
    model: str = "virtio"
    floating: str | None = None  # an address from the floating pool, DNATed to ipv4
    created_at: float = field(default_factory=time.time)
    # Its instance's node, set at placement: each node's mesh learns which
    # nodes are on a network from the interfaces alone, without following
    # every instance of the cloud (nodeagent.scope). None in older records.
    node: str | None = None
    # Filtering on the hypervisor (cloudstate.secgroups): the union of these
    # security groups' rules applies; an interface of a namespace names at
    # least its ``default`` group. With port_security off nothing is
    # filtered (neither groups nor anti-spoofing) and the list is empty.
    security_groups: list[str] = field(default_factory=list)
    port_security: bool = True
    # Addresses (CIDRs) the guest may send from besides its own, for a
    # virtual IP several guests share; members of its groups' sets too.
    allowed_addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InterfaceObserved(Record):
    """What the hypervisor of an interface's instance has applied of its
    filtering (written by that node's agent)."""

    node: str
    state: str = "created"  # created (applied) or error
    error: str | None = None
    # uuid -> generation of each security group in force on the port, as
    # applied; compared with the desired records to tell "applied" from "pending".
    groups: dict[str, int] = field(default_factory=dict)
    port_security: bool = True
    allowed_addresses: list[str] = field(default_factory=list)
    applied_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class AddressReservation(Record):
    """An address taken from a pool, and by what. Shaken Fist's shape."""

    address: str
    type: str  # instance, floating, gateway
    user: list[str]  # [kind, uuid], e.g. ["interface", "<uuid>"]
    network_uuid: str  # whose traffic uses it (for floating addresses: the private network)
    comment: str = ""
    created_at: float = field(default_factory=time.time)


# --- security groups -----------------------------------------------------------------


@dataclass(frozen=True)
class SecurityRule(Record):
    """One allow rule of a security group, checked by cloudstate.secgroups.

    The remote end is at most one of: CIDRs, the members of a security
    group (by uuid), or an address set (by uuid); none means anywhere."""

    uuid: str
    direction: str  # ingress or egress
    protocol: str = "any"  # any, tcp, udp, icmp, or an IP protocol number as text
    ports: str | None = None  # tcp/udp destination ports, "22,80-90"; None: all
    icmp_type: int | None = None
    icmp_code: int | None = None
    remote_cidrs: list[str] = field(default_factory=list)
    remote_group: str | None = None
    remote_address_set: str | None = None
    description: str = ""
    ethertype: str = "ipv4"
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class SecurityGroup(Record):
    """A namespace's named set of allow rules, applied to the interfaces
    that name it. ``generation`` grows with every change of its rules, so
    an agent can say which version it has applied."""

    uuid: str
    name: str
    namespace: str
    description: str = ""
    rules: list[SecurityRule] = field(default_factory=list)
    generation: int = 1
    created_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AddressSet(Record):
    """A named list of CIDRs (an office's ranges, a partner's hosts) that
    rules may name as their remote end."""

    uuid: str
    name: str
    namespace: str
    cidrs: list[str] = field(default_factory=list)
    description: str = ""
    generation: int = 1
    created_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)


_NESTED: dict[tuple[str, str], type[Record]] = {
    ("SecurityGroup", "rules"): SecurityRule,
    ("InstanceSpec", "disks"): Disk,
    ("InstanceSpec", "power"): PowerIntent,
    ("InstanceSpec", "nvram_template"): DiskSource,
    ("Disk", "source"): DiskSource,
}
