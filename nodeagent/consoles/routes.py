"""The console routes of the agent's server: both relays and the console log.

Each route answers only for instances this node holds; the grant already
names the exact path, so an instance elsewhere is simply "not here".
"""

from __future__ import annotations

import uuid as uuidlib
from pathlib import Path
from typing import Any

from aiohttp import web

from cloudstate.consoles import WHOLE_LOG, agent_path, consolelog_path
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import InstanceSpec
from nodeagent import records
from nodeagent.consoles import logfile
from nodeagent.consoles.serial import SerialConsoles
from nodeagent.consoles.vnc import VncConsoles
from nodeagent.hypervisor import Hypervisor
from nodeagent.instances import CONSOLE_LOG
from nodeagent.server import AgentServer

MAX_CONSOLEDATA = 16 * 1024 * 1024


class ConsoleRoutes:
    def __init__(self, *, server: AgentServer, node: str, keys: Keys, mirror: MirrorView,
                 hypervisor: Hypervisor, instances_dir: Path):
        self._node = node
        self._keys = keys
        self._mirror = mirror
        self._instances_dir = instances_dir
        self._server = server
        self.serial = SerialConsoles(server, hypervisor, self.log_path)
        self.vnc = VncConsoles(server, hypervisor, self.on_this_node)

    def on_this_node(self, uuid: str) -> bool:
        kv = self._mirror.get(self._keys.instance(uuid))
        if kv is None:
            return False
        spec = InstanceSpec.from_json(kv.value)
        return spec.node == self._node and spec.desired != "deleted"

    def log_path(self, uuid: str) -> Path | None:
        if not self.on_this_node(uuid):
            return None
        # The uuid becomes a path: make sure it is nothing but a uuid, in our directory.
        try:
            return records.contained(
                records.contained(self._instances_dir, str(uuidlib.UUID(uuid))), CONSOLE_LOG)
        except (ValueError, records.BadRecord):
            return None

    def register(self) -> None:
        server = self._server
        placeholder = "{uuid}"
        server.add_route("GET", agent_path("serial", placeholder), self.serial.handle)
        server.add_route("GET", agent_path("vnc", placeholder), self.vnc.handle)
        server.add_route("GET", consolelog_path(placeholder), self._log_tail)
        server.add_route("DELETE", consolelog_path(placeholder), self._log_clear)

    async def _log_tail(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        path = self.log_path(request.match_info["uuid"])
        if path is None:
            return web.json_response({"error": "no such instance on this node"}, status=404)
        asked = request.query.get("length", "10240")
        try:
            length = None if asked == WHOLE_LOG else int(asked)
        except ValueError:
            length = -1
        if length is not None and not 0 <= length <= MAX_CONSOLEDATA:
            return web.json_response(
                {"error": f"length must be 0 to {MAX_CONSOLEDATA}, or {WHOLE_LOG}"}, status=400)
        return web.Response(body=logfile.tail(path, length),
                            content_type="application/octet-stream")

    async def _log_clear(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        path = self.log_path(request.match_info["uuid"])
        if path is None:
            return web.json_response({"error": "no such instance on this node"}, status=404)
        logfile.clear(path)
        return web.json_response(None)
