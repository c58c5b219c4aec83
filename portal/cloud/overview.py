"""The dashboard's figures: nodes online and offline, instances by state, the
capacity used and free on each node and in all, floating addresses, and a
namespace's own use against its quotas (portal.cloud.quotas).

Everything comes from the live hub's mirror of etcd, with the scheduler's
own accounting (``scheduler.loads_from``), so the dashboard says exactly
what placement sees, and can be worked out again at every change without a
read of its own.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.mirror import Mirror
from portal.cloud import networks, quotas, scheduler
from portal.cloud.instances import InstanceRecord
from portal.cloud.refs import Namespaces, visible
from portal.cloud.scheduler import NodeLoad

# The order states are listed in, the way an instance goes through them.
STATE_ORDER = ("initial", "creating", "created", "error", "deleting", "deleted")
POWER_ORDER = ("on", "paused", "off", "crashed", "initial")


@dataclass(frozen=True)
class Capacity:
    used: int
    total: int

    @property
    def free(self) -> int:
        return max(self.total - self.used, 0)

    @property
    def percent(self) -> int:
        """Used, as a whole percentage of the total (capped at 100 for bars)."""
        return min(round(100 * self.used / self.total), 100) if self.total > 0 else 0


@dataclass(frozen=True)
class NodeRow:
    load: NodeLoad

    @property
    def name(self) -> str:
        return self.load.info.name

    @property
    def vcpus(self) -> Capacity:
        return Capacity(self.load.cpus, self.load.cpu_limit)

    @property
    def memory(self) -> Capacity:
        return Capacity(self.load.memory_mib, self.load.memory_limit)

    @property
    def disk(self) -> Capacity:
        return Capacity(self.load.disk_gb, self.load.disk_limit)


@dataclass(frozen=True)
class Overview:
    instances: int
    states: list[tuple[str, int]]  # (state, how many), in STATE_ORDER, none left out that has any
    power: list[tuple[str, int]]
    # The cloud's side, for those who may see nodes (None otherwise):
    nodes: list[NodeRow] | None = None
    vcpus: Capacity | None = None  # over the nodes online
    memory: Capacity | None = None  # MiB
    disk: Capacity | None = None  # GB
    floating: Capacity | None = None  # None also when the cloud has no floating network
    # One namespace's use of each quota, and its limits (when the person works in one):
    namespace: str | None = None
    use: list[quotas.Line] | None = None

    @property
    def online(self) -> int:
        return sum(1 for row in self.nodes or () if row.load.alive)

    @property
    def offline(self) -> int:
        return len(self.nodes or ()) - self.online


def _ordered(counts: Counter[str], order: tuple[str, ...]) -> list[tuple[str, int]]:
    known = [(name, counts[name]) for name in order if counts[name]]
    return known + sorted((name, n) for name, n in counts.items() if name not in order and n)


def overview(mirror: Mirror, keys: Keys, records: list[InstanceRecord], *,
             scope: Namespaces, sees_nodes: bool, namespace: str | None) -> Overview:
    """The dashboard for someone who sees ``records`` (the live instances of
    ``scope``), and nodes if ``sees_nodes``; ``namespace``: the one they work in."""
    shown = [record for record in records if visible(record.spec.namespace, scope)]
    found = Overview(
        instances=len(shown),
        states=_ordered(Counter(record.state for record in shown), STATE_ORDER),
        power=_ordered(Counter(record.power_state for record in shown), POWER_ORDER),
        namespace=namespace,
        use=quotas.from_mirror(mirror, keys, namespace) if namespace else None,
    )
    if not sees_nodes:
        return found
    loads = scheduler.loads_from(
        nodes=mirror.items(keys.nodes), alive=mirror.items(keys.alive),
        specs=mirror.items(keys.instances), observed=mirror.items(keys.observed_instances))
    rows = [NodeRow(load) for _, load in sorted(loads.items())]
    online = [row for row in rows if row.load.alive]
    pool = networks.floating_pool()
    return replace(
        found,
        nodes=rows,
        vcpus=Capacity(sum(r.vcpus.used for r in online), sum(r.vcpus.total for r in online)),
        memory=Capacity(sum(r.memory.used for r in online), sum(r.memory.total for r in online)),
        disk=Capacity(sum(r.disk.used for r in online), sum(r.disk.total for r in online)),
        floating=Capacity(sum(1 for _ in mirror.items(keys.addresses(FLOATING_POOL))),
                          pool.capacity) if pool is not None else None,
    )
