"""Usage history and figures, read from the agent of the object's node when
someone looks (``cloudstate.usage`` says why they live there).

Pages and their websockets call these; none of it is kept in the portal
(but a node's summary for a moment, SUMMARY_FRESH), so a portal restart
loses nothing and an idle portal does nothing for graphs.
A node that is offline or does not answer says so (AgentUnavailable, 503);
lists that show figures for many nodes at once leave that node's out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from cloudstate import usage
from portal.cloud.errors import CloudError
from portal.cloud.instances import InstanceRecord
from portal.consoles import agent

log = logging.getLogger(__name__)

# A list waits this long for the figures of all its nodes, then shows it without the late ones.
SUMMARY_TIMEOUT = 2.0
# Fifty people opening the instance list would each ask every node on their
# page (a first page of 10,000 instances on 100 nodes: ~50 agents, 0.5 s a
# page under load); a node's summary this recent serves them all, one
# request at a time per node. Nodes sample every 10 s; live cells follow
# the samples themselves (follow()).
SUMMARY_FRESH = 2.0
_recent: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[str, tuple[float, asyncio.Task[dict[str, Any] | None]]]
] = weakref.WeakKeyDictionary()


async def _get(node: str, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    return json.loads(await agent.request(node, "GET", path, params=params))


async def instance_history(record: InstanceRecord, range_name: str) -> dict[str, Any]:
    """An instance's history over ``range_name`` (hour, day or week)."""
    tier = usage.tier_for(range_name)
    return await _get(record.spec.node, usage.instance_path(record.uuid), {"range": tier.range})


async def node_history(node: str, range_name: str) -> dict[str, Any]:
    tier = usage.tier_for(range_name)
    return await _get(node, usage.NODE_PATH, {"range": tier.range})


async def summaries(nodes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each node's figures now (its own and its guests'), for the nodes that
    answer within SUMMARY_TIMEOUT."""
    wanted = sorted(set(nodes))
    loop = asyncio.get_running_loop()
    recent = _recent.setdefault(loop, {})
    now = loop.time()
    asked = []
    for node in wanted:
        found = recent.get(node)
        if found is None or now - found[0] > SUMMARY_FRESH:
            found = recent[node] = (now, loop.create_task(_summary(node)))
        asked.append(found[1])
    # Shielded: a page that goes away must not cancel others' answer.
    answers = await asyncio.gather(*(asyncio.shield(task) for task in asked))
    return {node: summary for node, summary in zip(wanted, answers, strict=True) if summary}


async def _summary(node: str) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(_get(node, usage.SUMMARY_PATH), SUMMARY_TIMEOUT)
    except (CloudError, TimeoutError, ValueError) as exc:
        log.debug("no usage figures from node %s: %s", node, exc)
        return None


def instance_figures(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every guest's figures from ``summaries``, by instance uuid."""
    return {uuid: figures for summary in found.values()
            for uuid, figures in (summary.get("instances") or {}).items()}


@asynccontextmanager
async def follow(node: str, topic: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """The node's new samples of ``topic`` as they are taken, while the
    context lasts (AgentUnavailable if the node can't be reached)."""
    ws = await agent.open_websocket(node, usage.live_path(topic))

    async def samples() -> AsyncIterator[dict[str, Any]]:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            yield json.loads(message.data)

    try:
        yield samples()
    finally:
        await ws.close()
