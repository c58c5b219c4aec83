"""Choose a node for a new instance, from real accounting of etcd's records
(kept by the live hub: ``snapshot``).

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

import asyncio
import contextlib
import random
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from django.conf import settings

from cloudstate.etcd import KeyValue
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
    placing: int = 0  # creates of this process placing here now, not yet committed
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
        if self.info.simulated != settings.CLOUD.simulated_hypervisor:
            # Never mixed: a simulated node runs no guest, so only a portal
            # measuring scale (SFCLOUD_SIMULATED_HYPERVISOR) places there,
            # and such a portal places nowhere else.
            return ("is a simulated node (it runs no guests)" if self.info.simulated
                    else "is a real node, and this portal places on simulated nodes only")
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


async def caught_up(revision: int) -> None:
    """Wait until the live hub's mirror holds every change up to
    ``revision`` (the one a lost placement's transaction saw: see
    ``snapshot``)."""
    # The hub builds on the cloud services, this module among them.
    from portal.live.hub import hub  # noqa: PLC0415

    await (await hub()).mirror.wait_for_revision(revision)


async def snapshot(keys: Keys) -> dict[str, NodeLoad]:
    """Every node with what is placed on it, from the live hub's mirror.

    The mirror may be a moment behind etcd; that is safe because the caller
    commits with a comparison on the chosen node's placement key at the
    revision this accounting saw it at (the mirror applies each transaction
    whole, and every placement rewrites its node's key with the instance):
    a create the mirror has not seen yet fails that comparison, and the
    loser counts again once ``caught_up`` with the revision its failed
    commit saw (so this time the mirror holds the competing create).
    Reading the mirror, whose records stay parsed, keeps a placement at a
    pass over the nodes rather than a read and parse of every instance in
    etcd (10,000 instances: ~0.5 s each).
    """
    from portal.live.hub import hub  # noqa: PLC0415

    mirror = (live := await hub()).mirror
    loads = tally(nodes=live.nodes(), alive=mirror.items(keys.alive), placed=(),
                  placements=mirror.items(keys.placement("")),
                  maintenance=mirror.items(keys.maintenance_all))
    # The hub keeps each node's sums as instances change (read in the same
    # step as the records above: nothing runs in between).
    for name, usage in live.placed().nodes.items():
        if (load := loads.get(name)) is not None:
            load.cpus, load.memory_mib, load.disk_gb = usage.cpus, usage.memory_mib, usage.disk_gb
            load.instances = list(usage.instances)
            load.tags = usage.tags.copy()
    for name, count in _placing_now().items():
        if (load := loads.get(name)) is not None:
            load.placing = count
    return loads


_placing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Counter[str]] = \
    weakref.WeakKeyDictionary()


def _placing_now() -> Counter[str]:
    return _placing.setdefault(asyncio.get_running_loop(), Counter())


@contextlib.contextmanager
def placing(node: str) -> Iterator[None]:
    """While a create of this process places on ``node`` (from its choice
    to its commit): other creates choosing meanwhile pass over the node
    while another fits (``choose``), rather than all take the same best
    node and all but one lose the race to it."""
    counter = _placing_now()
    counter[node] += 1
    try:
        yield
    finally:
        counter[node] -= 1
        if not counter[node]:
            del counter[node]


def loads_from(*, nodes: Iterable[KeyValue], alive: Iterable[KeyValue],
               specs: Iterable[KeyValue], observed: Iterable[KeyValue],
               placements: Iterable[KeyValue] = (),
               maintenance: Iterable[KeyValue] = ()) -> dict[str, NodeLoad]:
    """The accounting of ``snapshot`` over records as read from etcd or a
    mirror (the dashboard's)."""
    seen = {
        kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value) for kv in observed
    }
    placed = ((spec, seen.get(spec.uuid))
              for spec in (InstanceSpec.from_json(kv.value) for kv in specs))
    readable = (readable_node(kv.key, kv.value) for kv in nodes)
    return tally(nodes=(info for info in readable if info is not None), alive=alive,
                 placed=placed, placements=placements,
                 maintenance=maintenance)


def tally(*, nodes: Iterable[NodeInfo], alive: Iterable[KeyValue],
          placed: Iterable[tuple[InstanceSpec, InstanceObserved | None]],
          placements: Iterable[KeyValue] = (),
          maintenance: Iterable[KeyValue] = ()) -> dict[str, NodeLoad]:
    """Each node's load: what every instance holding resources takes."""
    alive_names = {kv.key.rsplit("/", 1)[-1] for kv in alive}
    kept_off = {kv.key.rsplit("/", 1)[-1] for kv in maintenance}
    loads = {
        info.name: NodeLoad(info=info, alive=info.name in alive_names,
                            maintenance=info.name in kept_off)
        for info in nodes
    }
    for kv in placements:
        node = kv.key.rsplit("/", 1)[-1]
        if node in loads:
            loads[node].placement_revision = kv.mod_revision
    for spec, observed in placed:
        load = loads.get(spec.node)
        if load is None or not holds_resources(spec, observed):
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
           avoid: set[str] | frozenset[str] = frozenset(),
           affinity: Mapping[str, int] | None = None, strategy: str | None = None
           ) -> NodeLoad:
    """The best node among those that fit (see the module's docstring), or
    InsufficientResources naming what each node lacks. ``avoid``: nodes
    another create just took (our placement on them lost the race), passed
    over while another fits, and the choice among the rest made partly at
    random, so concurrent creates that all chose the same best node spread
    out instead of queueing on the next one."""
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

    # Nodes other creates of this process are placing on right now are
    # passed over while another fits: concurrent creates take different
    # nodes instead of racing for the same best one.
    fitting = [load for load in fitting if not load.placing] or fitting
    if not avoid:
        return max(fitting, key=rank)
    # Every create that lost the same race (to another portal process, or
    # on a node all fitting ones were busy on) would otherwise choose the
    # same next node and lose again together: the better of two taken at
    # random spreads them (the "power of two choices"), among the nodes not
    # lost on yet, or all that fit once every one has been.
    others = [load for load in fitting if load.info.name not in avoid] or fitting
    return max(random.sample(others, 2), key=rank) if len(others) > 1 else others[0]
