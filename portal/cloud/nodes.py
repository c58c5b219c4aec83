"""Nodes as the portal shows them: what each agent registered, whether its
heartbeat lease is still alive (an agent renews it every few seconds; it
ends SFCLOUD_NODE_LEASE_TTL seconds after the last renewal, and the node is
offline from then), whether an operator keeps new instances off it
(maintenance), and the metadata the portal keeps for it; and deleting a
node that is gone for good.

A node's own record (NodeInfo) is its agent's; the portal writes only the
node's metadata (NodeSpec) and, when a node is deleted, removes what the
cloud kept of it. Only members of the system namespace see nodes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from django.conf import settings

from cloudstate import states
from cloudstate.etcd import Compare, Delete
from cloudstate.model import InstanceObserved, InstanceSpec, NodeInfo, NodeSpec, readable_node
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import SYSTEM_NAMESPACE, AuditAction
from portal.cloud import changes, store
from portal.cloud.errors import Conflict, Forbidden, InsufficientResources, NotFound

KIND = ObjectKind.NODE
log = logging.getLogger(__name__)
DELETED = "deleted"


@dataclass(frozen=True)
class NodeRecord:
    kind: ClassVar[ObjectKind] = KIND
    info: NodeInfo
    alive: bool
    last_seen: float  # when the agent last (re)wrote its record
    spec: NodeSpec = field(default_factory=lambda: NodeSpec(name=""))
    revision: int = 0  # of the NodeSpec; 0 while it has none
    info_revision: int = 0
    deleted: bool = False
    maintenance: bool = False

    @property
    def uuid(self) -> str:
        return self.info.name

    @property
    def state(self) -> str:
        if self.deleted:
            return DELETED
        return "created" if self.alive else "offline"


def require_system(actor: Actor) -> None:
    """Nodes carry every namespace's instances: only system members see them."""
    if not actor.is_system:
        raise Forbidden("only the system namespace may see nodes")


def _readable(key: str, value: bytes) -> NodeInfo | None:
    info = readable_node(key, value)
    if info is None:
        log.warning("node record %s can't be shown (left out until its agent writes it "
                    "again): %.200r", key, value)
    return info


async def list_nodes() -> list[NodeRecord]:
    etcd, keys = store.etcd(), store.keys()
    (nodes, _), (alive, _), (specs, _), (kept_off, _) = await asyncio.gather(
        etcd.get_prefix(keys.nodes), etcd.get_prefix(keys.alive),
        etcd.get_prefix(keys.node_specs), etcd.get_prefix(keys.maintenance_all))
    alive_names = {kv.key.rsplit("/", 1)[-1] for kv in alive}
    maintenance = {kv.key.rsplit("/", 1)[-1] for kv in kept_off}
    spec_kvs = {kv.key.rsplit("/", 1)[-1]: kv for kv in specs}
    records = []
    for kv in nodes:
        info = _readable(kv.key, kv.value)
        if info is None:
            continue
        spec_kv = spec_kvs.get(info.name)
        records.append(NodeRecord(
            info=info, alive=info.name in alive_names, last_seen=info.started_at,
            spec=NodeSpec.from_json(spec_kv.value) if spec_kv else NodeSpec(name=info.name),
            revision=spec_kv.mod_revision if spec_kv else 0, info_revision=kv.mod_revision,
            maintenance=info.name in maintenance))
    return sorted(records, key=lambda r: r.info.name)


async def offline_nodes() -> set[str]:
    """Registered nodes whose lease has ended."""
    return {r.info.name for r in await list_nodes() if not r.alive}


async def _load(name: str) -> NodeRecord | None:
    etcd, keys = store.etcd(), store.keys()
    info_kv, alive_kv, spec_kv, kept_off = await asyncio.gather(
        etcd.get(keys.node(name)), etcd.get(keys.node_alive(name)), etcd.get(keys.node_spec(name)),
        etcd.get(keys.maintenance(name)))
    info = None if info_kv is None else _readable(info_kv.key, info_kv.value)
    if info_kv is None or info is None:
        return None
    return NodeRecord(
        info=info, alive=alive_kv is not None, last_seen=info.started_at,
        spec=NodeSpec.from_json(spec_kv.value) if spec_kv else NodeSpec(name=name),
        revision=spec_kv.mod_revision if spec_kv else 0, info_revision=info_kv.mod_revision,
        maintenance=kept_off is not None)


async def get(actor: Actor, name: str) -> NodeRecord:
    require_system(actor)
    record = await _load(name)
    if record is None:
        raise NotFound(f"node {name} not found")
    return record


async def update(record: NodeRecord, change: Callable[[NodeRecord], NodeSpec]) -> NodeRecord:
    """Rewrite the node's metadata record with ``change`` (see store.rewrite).
    The caller is a service that has checked the Actor's role."""
    return await store.rewrite(record, change, key=store.keys().node_spec, load=_load,
                               kind=KIND)


async def set_maintenance(actor: Actor, record: NodeRecord, on: bool) -> NodeRecord:
    """In maintenance a node takes no new instances; what runs there stays."""
    require_system(actor)
    etcd, keys = store.etcd(), store.keys()
    name = record.info.name
    # Audited as the node's settings change they are (no action of its own).
    async with changes.changing(actor, AuditAction.SET_METADATA, KIND,
                                namespace=SYSTEM_NAMESPACE, object_id=name, object_name=name,
                                detail=f"maintenance {'on' if on else 'off'}",
                                what=f"node {name}"):
        if on:
            await etcd.put(keys.maintenance(name), b"1")
        else:
            await etcd.delete(keys.maintenance(name))
    return await get(actor, name)


# --- deleting a node -----------------------------------------------------------------------


async def delete(actor: Actor, record: NodeRecord) -> NodeRecord:
    """Forget a node that is gone for good: its record, metadata, placement
    fence, its copies of blobs and of its deleted instances' records and, if
    it held it, the network node's role.

    Refused (409) while its agent is online (it would register again at
    once: stop it first) and while any instance placed on it is not fully
    deleted (Shaken Fist deletes those with the node; we won't lose them
    silently)."""
    name = record.info.name
    async with changes.changing(actor, AuditAction.DELETE, KIND, namespace=SYSTEM_NAMESPACE,
                                object_id=name, object_name=name, what=f"node {name}"):
        await _forget(record)
    await changes.event(actor, KIND, name, "deleted", operation=AuditAction.DELETE)
    return NodeRecord(info=record.info, alive=False, last_seen=record.last_seen,
                      spec=record.spec, deleted=True)


async def _forget(record: NodeRecord) -> None:
    etcd, keys = store.etcd(), store.keys()
    name = record.info.name
    if record.alive:
        raise Conflict(f"node {name} is online: stop its agent before deleting it")
    placement = await etcd.get(keys.placement(name))
    held = await _instances_on(name)
    if held:
        listed = ", ".join(f"{spec.name} ({spec.uuid})" for spec in held[:10])
        more = f" and {len(held) - 10} more" if len(held) > 10 else ""
        raise Conflict(f"node {name} still hosts {len(held)} instance"
                       f"{'s' if len(held) != 1 else ''}: {listed}{more}; delete "
                       f"{'them' if len(held) != 1 else 'it'} first")
    role = await etcd.get(keys.network_node_role)
    gives_up_role = role is not None and role.value.decode() == name
    result = await etcd.txn(
        [Compare.absent(keys.node_alive(name)),
         # A placement onto the node since we looked rewrites this key.
         Compare.unchanged_since(keys.placement(name),
                                 placement.mod_revision if placement else 0),
         *([Compare.value_is(keys.network_node_role, name)] if gives_up_role else [])],
        [Delete(keys.node(name)), Delete(keys.node_spec(name)), Delete(keys.placement(name)),
         Delete(keys.maintenance(name)),
         Delete(keys.observed_blobs_of(name), prefix=True),
         # Copies of its instances' records (cloudstate.keys) not yet purged with them.
         Delete(keys.node_copies(name), prefix=True),
         *([Delete(keys.network_node_role)] if gives_up_role else [])],
    )
    if not result.succeeded:
        raise Conflict(f"node {name} changed while it was being deleted; try again")


async def _instances_on(node: str) -> list[InstanceSpec]:
    """The instances placed on ``node`` that are not yet fully deleted."""
    etcd, keys = store.etcd(), store.keys()
    (spec_kvs, _), (observed_kvs, _) = await asyncio.gather(
        etcd.get_prefix(keys.instances), etcd.get_prefix(keys.observed_instances))
    observed = {kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value)
                for kv in observed_kvs}
    found = []
    for kv in spec_kvs:
        spec = InstanceSpec.from_json(kv.value)
        if spec.node == node and \
                states.instance_state(spec, observed.get(spec.uuid)) != states.DELETED:
            found.append(spec)
    return sorted(found, key=lambda spec: (spec.created_at, spec.uuid))


def seen_at(record: NodeRecord) -> float:
    """When the node was last known to be there (now, while it is alive)."""
    return time.time() if record.alive else record.last_seen


async def storage_node() -> str:
    """Where new bytes are made (a fetch, an upload): the live hypervisor
    with the most free disk."""
    live = [r for r in await list_nodes() if r.alive and r.info.is_hypervisor
            # never a simulated node for a real cloud, nor the reverse (scheduler)
            and r.info.simulated == settings.CLOUD.simulated_hypervisor]
    if not live:
        raise InsufficientResources("no hypervisor node is online to store it on")
    return max(live, key=lambda r: (r.info.disk_free_gb, r.info.name)).info.name
