"""Nodes as the portal shows them: what each agent registered, whether its
heartbeat lease is still alive (an agent renews it every few seconds; it
ends SFCLOUD_NODE_LEASE_TTL seconds after the last renewal, and the node is
offline from then), and whether an operator keeps new instances off it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cloudstate.etcd import Delete
from cloudstate.model import NodeInfo
from portal.cloud import scheduler, store
from portal.cloud.errors import Conflict, InsufficientResources, NotFound


@dataclass(frozen=True)
class NodeRecord:
    info: NodeInfo
    alive: bool
    last_seen: float  # when the agent last (re)wrote its record
    maintenance: bool = False

    @property
    def state(self) -> str:
        return "created" if self.alive else "offline"


async def list_nodes() -> list[NodeRecord]:
    etcd, keys = store.etcd(), store.keys()
    (nodes, _), (alive, _), (kept_off, _) = await asyncio.gather(
        etcd.get_prefix(keys.nodes), etcd.get_prefix(keys.alive),
        etcd.get_prefix(keys.maintenance_all),
    )
    alive_names = {kv.key.rsplit("/", 1)[-1] for kv in alive}
    maintenance = {kv.key.rsplit("/", 1)[-1] for kv in kept_off}
    records = []
    for kv in nodes:
        info = NodeInfo.from_json(kv.value)
        records.append(NodeRecord(info=info, alive=info.name in alive_names,
                                  last_seen=info.started_at,
                                  maintenance=info.name in maintenance))
    return sorted(records, key=lambda r: r.info.name)


async def offline_nodes() -> set[str]:
    """Registered nodes whose lease has ended."""
    return {r.info.name for r in await list_nodes() if not r.alive}


async def get(name: str) -> NodeRecord:
    for record in await list_nodes():
        if record.info.name == name:
            return record
    raise NotFound(f"node {name} not found")


async def set_maintenance(name: str, on: bool) -> NodeRecord:
    """In maintenance a node takes no new instances; what runs there stays."""
    await get(name)
    etcd, keys = store.etcd(), store.keys()
    if on:
        await etcd.put(keys.maintenance(name), b"1")
    else:
        await etcd.delete(keys.maintenance(name))
    return await get(name)


async def forget(name: str) -> NodeRecord:
    """Remove a node that is gone (its agent stopped: sfcloud-deploy
    remove-node does it) and holds no instances any more."""
    record = await get(name)
    if record.alive:
        raise Conflict(f"node {name} is online: stop its agent first "
                       "(sfcloud-deploy remove-node does)")
    etcd, keys = store.etcd(), store.keys()
    held = (await scheduler.snapshot(etcd, keys)).get(name)
    if held is not None and held.instances:
        raise Conflict(f"node {name} still hosts {len(held.instances)} instances")
    await etcd.txn([], [Delete(keys.node(name)), Delete(keys.placement(name)),
                        Delete(keys.maintenance(name))])
    return record


async def storage_node() -> str:
    """Where new bytes are made (a fetch, an upload): the live hypervisor
    with the most free disk."""
    live = [r for r in await list_nodes() if r.alive and r.info.is_hypervisor]
    if not live:
        raise InsufficientResources("no hypervisor node is online to store it on")
    return max(live, key=lambda r: (r.info.disk_free_gb, r.info.name)).info.name
