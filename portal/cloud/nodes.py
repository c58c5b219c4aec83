"""Nodes as the portal shows them: what each agent registered, and whether
its heartbeat lease is still alive."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from django.conf import settings

from cloudstate.model import NodeInfo
from portal.cloud import store
from portal.cloud.errors import InsufficientResources


@dataclass(frozen=True)
class NodeRecord:
    info: NodeInfo
    alive: bool
    last_seen: float  # when the agent last (re)wrote its record

    @property
    def state(self) -> str:
        return "created" if self.alive else "offline"


async def list_nodes() -> list[NodeRecord]:
    etcd, keys = store.etcd(), store.keys()
    (nodes, _), (alive, _) = await asyncio.gather(
        etcd.get_prefix(keys.nodes), etcd.get_prefix(keys.alive)
    )
    alive_names = {kv.key.rsplit("/", 1)[-1] for kv in alive}
    records = []
    for kv in nodes:
        info = NodeInfo.from_json(kv.value)
        records.append(NodeRecord(info=info, alive=info.name in alive_names,
                                  last_seen=info.started_at))
    return sorted(records, key=lambda r: r.info.name)


async def storage_node() -> str:
    """Where new bytes are made (a fetch, an upload): the live hypervisor
    with the most free disk."""
    live = [r for r in await list_nodes() if r.alive and r.info.is_hypervisor
            # never a simulated node for a real cloud, nor the reverse (scheduler)
            and r.info.simulated == settings.CLOUD.simulated_hypervisor]
    if not live:
        raise InsufficientResources("no hypervisor node is online to store it on")
    return max(live, key=lambda r: (r.info.disk_free_gb, r.info.name)).info.name
