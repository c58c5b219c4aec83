"""The usage routes of the agent's server: history, figures now, live samples
(for the portal, under its signed grants) and /metrics (for Prometheus,
under the metrics token)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid as uuidlib
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from cloudstate import metrics, usage
from cloudstate.validation import ValidationError
from nodeagent.server import AgentServer
from nodeagent.usage.history import NODE_KEY
from nodeagent.usage.prometheus import AgentState, registry
from nodeagent.usage.sampler import UsageSampler
from nodeagent.workqueue import WorkQueue


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


class UsageRoutes:
    def __init__(self, *, server: AgentServer, sampler: UsageSampler,
                 on_this_node: Callable[[str], bool], queues: Mapping[str, WorkQueue],
                 metrics_token: str | None):
        self._server = server
        self._sampler = sampler
        self._on_this_node = on_this_node
        self._queues = queues
        self._metrics_token = metrics_token

    def register(self) -> None:
        add = self._server.add_route
        add("GET", usage.instance_path("{uuid}"), self._instance_history)
        add("GET", usage.NODE_PATH, self._node_history)
        add("GET", usage.SUMMARY_PATH, self._summary)
        add("GET", usage.live_path(usage.instance_topic("{uuid}")), self._instance_live)
        add("GET", usage.live_path(usage.NODE_TOPIC), self._node_live)
        add("GET", usage.live_path(usage.SUMMARY_TOPIC), self._summary_live)
        self._server.add_token_route("GET", metrics.PATH, self._metrics_token, self._metrics,
                                     metrics.OFF_MESSAGE)

    # --- history -------------------------------------------------------------------------

    def _instance_uuid(self, request: web.Request) -> str | web.Response:
        try:
            uuid = str(uuidlib.UUID(request.match_info["uuid"]))
        except ValueError:
            return _refuse(400, "not an instance UUID")
        if not self._on_this_node(uuid):
            return _refuse(404, "no such instance on this node")
        return uuid

    async def _instance_history(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        uuid = self._instance_uuid(request)
        if isinstance(uuid, web.Response):
            return uuid
        return self._history(request, uuid, usage.INSTANCE_METRICS)

    async def _node_history(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        return self._history(request, NODE_KEY, usage.NODE_METRICS)

    def _history(self, request: web.Request, key: str, names: tuple[str, ...]) -> web.Response:
        try:
            tier = usage.tier_for(request.query.get("range", "hour"))
        except ValidationError as exc:
            return _refuse(400, str(exc))
        answer: dict[str, Any] = {"range": tier.range, "step": tier.step,
                                  "interval": self._sampler.interval, "times": [],
                                  "metrics": {name: [] for name in names}}
        history = self._sampler.store.find(key, names)
        if history is not None:
            times, columns = history.series(tier, self._sampler.clock())
            answer["times"] = times
            answer["metrics"] = {name: [usage.clean(v) for v in column]
                                 for name, column in columns.items()}
        return web.json_response(answer)

    async def _summary(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        return web.json_response(self._sampler.summary(await self._sampler.current()))

    # --- live ------------------------------------------------------------------------------

    async def _instance_live(self, request: web.Request,
                             claims: dict[str, Any]) -> web.StreamResponse:
        uuid = self._instance_uuid(request)
        if isinstance(uuid, web.Response):
            return uuid
        return await self._stream(request, usage.instance_topic(uuid))

    async def _node_live(self, request: web.Request, claims: dict[str, Any]) -> web.StreamResponse:
        return await self._stream(request, usage.NODE_TOPIC)

    async def _summary_live(self, request: web.Request,
                            claims: dict[str, Any]) -> web.StreamResponse:
        return await self._stream(request, usage.SUMMARY_TOPIC)

    async def _stream(self, request: web.Request, topic: str) -> web.WebSocketResponse:
        """Each new sample of ``topic``, as JSON, until the peer goes."""
        ws = await self._server.websocket(request, heartbeat=30)
        with self._sampler.topics.listen(topic) as queue:
            async def send_all() -> None:
                while True:
                    await ws.send_json(await queue.get())

            sender = asyncio.ensure_future(send_all())
            try:
                async for _ in ws:  # nothing is expected from the peer but its close
                    pass
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await sender
        return ws

    # --- Prometheus ------------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        sampler = self._sampler
        state = AgentState(sample=await sampler.current(), placed=sampler.placed(),
                           queues=self._queues, interval=sampler.interval,
                           listeners=sampler.topics.listeners)
        return web.Response(body=metrics.exposition([registry(state)]),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

