"""Choose a node for a new instance, from real accounting in etcd.

Every instance that still holds resources on a node (active, or deleted but
not yet torn down) counts against it. Placement is optimistic: the caller
commits with a comparison on the node's placement key, which every placement
onto that node rewrites, so two concurrent creates can never both take the
last free memory of a node; the loser recomputes and tries again.

Among the nodes that fit (online, not in maintenance, with room), the
choice follows, in order: Shaken Fist's affinity metadata (an instance's
``affinity``, ``{"tag": score}``, adds each score once per instance with that
tag already on a node: positive attracts, negative repels); then a node
holding what the instance starts from (no copy); then the strategy
(SFCLOUD_SCHEDULER): ``spread`` takes the node with the most memory to
spare, ``pack`` the one with the least that still fits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.conf import settings

from cloudstate.etcd import Etcd, KeyValue
from cloudstate.keys import Keys
from cloudstate.model import InstanceObserved, InstanceSpec, NodeInfo, readable_node
from cloudstate.validation import shown
from portal.cloud.errors import InsufficientResources, NotFound

FIRMWARE_NAMES = {"uefi": "UEFI", "secure-boot": "secure boot"}


@dataclass(frozen=True)
class Demand:
    cpus: int
    memory_mib: int
    disk_gb: int
    firmware: tuple[str, ...] = ()  # boot firmware beyond BIOS: "uefi", "secure-boot"


@dataclass
class NodeLoad:
    info: NodeInfo
    alive: bool
    maintenance: bool = False
    placement_revision: int = 0
    cpus: int = 0
    memory_mib: int = 0
    disk_gb: int = 0
    instances: list[str] = field(default_factory=list)
    tags: Counter[str] = field(default_factory=Counter)  # instances on it per tag

    @property
    def cpu_limit(self) -> int:
        return int(self.info.vcpus * settings.SCHEDULER_CPU_OVERCOMMIT)

    @property
    def memory_limit(self) -> int:
        usable = max(self.info.memory_mib - settings.SCHEDULER_RAM_RESERVED_MIB, 0)
        return int(usable * settings.SCHEDULER_RAM_OVERCOMMIT)

    @property
    def disk_limit(self) -> int:
        return max(self.info.disk_total_gb - settings.SCHEDULER_DISK_RESERVED_GB, 0)

    def shortfall(self, demand: Demand) -> str | None:
        """Why this node can't take ``demand`` (to follow its name: "is
        offline", "has ..."), or None if it can. The figures are those the
        Nodes page shows: what is placed against the limit after overcommit
        and reserves."""
        if not self.alive:
            return "is offline"
        if self.maintenance:
            return "is in maintenance (no new instances)"
        if not self.info.is_hypervisor:
            return "runs no instances (it is not a hypervisor)"
        missing = [name for name in demand.firmware if name not in self.info.firmware]
        if missing:
            return (f"has no {' or '.join(FIRMWARE_NAMES[name] for name in missing)} firmware "
                    "(Debian's ovmf package)")
        if demand.cpus > self.info.vcpus:
            # Overcommit shares CPUs between guests; one guest never gets
            # more vCPUs than the host has CPUs to run them on at once.
            return (f"has {self.info.vcpus} CPUs, and one instance may have at most as many "
                    "vCPUs as its node has CPUs")
        if self.cpus + demand.cpus > self.cpu_limit:
            return (f"has {max(self.cpu_limit - self.cpus, 0)} of its {self.cpu_limit} vCPUs "
                    "free")
        if self.memory_mib + demand.memory_mib > self.memory_limit:
            return (f"has {max(self.memory_limit - self.memory_mib, 0)} MiB memory free of "
                    f"the {self.memory_limit} MiB it gives guests")
        free_disk = min(self.disk_limit - self.disk_gb,
                        self.info.disk_free_gb - settings.SCHEDULER_DISK_RESERVED_GB)
        if demand.disk_gb > free_disk:
            return f"has {max(free_disk, 0)} GB disk free"
        return None


def holds_resources(spec: InstanceSpec, observed: InstanceObserved | None) -> bool:
    if spec.desired != "deleted":
        return True
    return observed is not None and observed.state != "deleted"


async def snapshot(etcd: Etcd, keys: Keys) -> dict[str, NodeLoad]:
    """Every node with what is placed on it."""
    # Placement revisions are read before the instances: a create that
    # commits in between then fails our later comparison instead of being
    # missed by the accounting.
    placements, _ = await etcd.get_prefix(keys.placement(""))
    nodes, _ = await etcd.get_prefix(keys.nodes)
    alive, _ = await etcd.get_prefix(keys.alive)
    maintenance, _ = await etcd.get_prefix(keys.maintenance_all)
    specs, _ = await etcd.get_prefix(keys.instances)
    observed_kvs, _ = await etcd.get_prefix(keys.observed_instances)
    return loads_from(nodes=nodes, alive=alive, specs=specs, observed=observed_kvs,
                      placements=placements, maintenance=maintenance)


def loads_from(*, nodes: Iterable[KeyValue], alive: Iterable[KeyValue],
               specs: Iterable[KeyValue], observed: Iterable[KeyValue],
               placements: Iterable[KeyValue] = (),
               maintenance: Iterable[KeyValue] = ()) -> dict[str, NodeLoad]:
    """The accounting of ``snapshot`` over records already read (from etcd,
    or from a mirror of it, as the dashboard does)."""
    alive_names = {kv.key.rsplit("/", 1)[-1] for kv in alive}
    kept_off = {kv.key.rsplit("/", 1)[-1] for kv in maintenance}
    loads = {
        info.name: NodeLoad(info=info, alive=info.name in alive_names,
                            maintenance=info.name in kept_off)
        for info in (readable_node(kv.key, kv.value) for kv in nodes) if info is not None
    }
    for kv in placements:
        node = kv.key.rsplit("/", 1)[-1]
        if node in loads:
            loads[node].placement_revision = kv.mod_revision
    seen = {
        kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value) for kv in observed
    }
    for kv in specs:
        spec = InstanceSpec.from_json(kv.value)
        load = loads.get(spec.node)
        if load is None or not holds_resources(spec, seen.get(spec.uuid)):
            continue
        load.cpus += spec.cpus
        load.memory_mib += spec.memory
        load.disk_gb += spec.disk_total_gb
        load.instances.append(spec.uuid)
        load.tags.update(set(instance_tags(spec)))
    return loads


def instance_tags(spec: InstanceSpec) -> list[str]:
    tags = spec.metadata.get("tags") if isinstance(spec.metadata, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def affinity_of(metadata: Mapping[str, object] | None) -> dict[str, int]:
    """An instance's ``affinity`` metadata (validated as a dict of ints when
    it was set), or nothing."""
    found = (metadata or {}).get("affinity")
    if not isinstance(found, dict):
        return {}
    return {str(tag): score for tag, score in found.items()
            if isinstance(score, int) and not isinstance(score, bool)}


def affinity_score(load: NodeLoad, affinity: Mapping[str, int]) -> int:
    return sum(score * load.tags[tag] for tag, score in affinity.items())


def choose(demand: Demand, loads: dict[str, NodeLoad], *, required: str | None = None,
           preferred: set[str] | frozenset[str] = frozenset(),
           affinity: Mapping[str, int] | None = None, strategy: str | None = None
           ) -> NodeLoad:
    """The best node among those that fit (see the module's docstring), or
    InsufficientResources naming what each node lacks."""
    if required is not None:
        if required not in loads:
            raise NotFound(f"there is no node named {shown(required)}")
        candidates = {required: loads[required]}
    else:
        candidates = loads
    if not candidates:
        raise InsufficientResources("no nodes are registered: start a node agent first")
    reasons = {name: load.shortfall(demand) for name, load in candidates.items()}
    fitting = [candidates[name] for name, reason in reasons.items() if reason is None]
    if not fitting:
        detail = "; ".join(f"{name} {reason}" for name, reason in sorted(reasons.items()))
        raise InsufficientResources(
            f"no node can run an instance of {demand.cpus} vCPUs, {demand.memory_mib} MiB "
            f"memory and {demand.disk_gb} GB disk"
            + "".join(f" with {FIRMWARE_NAMES[name]}" for name in demand.firmware[-1:])
            + f": {detail}"
        )
    pack = (strategy or settings.SCHEDULER_STRATEGY) == "pack"

    def rank(load: NodeLoad) -> tuple[int, bool, int, str]:
        spare = load.memory_limit - load.memory_mib
        return (affinity_score(load, affinity or {}), load.info.name in preferred,
                -spare if pack else spare, load.info.name)

    return max(fitting, key=rank)
