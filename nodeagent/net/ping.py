"""The network node's ping from inside a network's namespace: its router's
view of the network, as Shaken Fist's ``network ping`` gives it.

The portal asks through the agent's server (a signed grant for this exact
path). The address comes back into a command line only after it parsed as
an IPv4 address of the network, and as that parse's own text.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid as uuidlib
from typing import Any

from aiohttp import web

from cloudstate import netping
from cloudstate.keys import Keys
from cloudstate.mirror import Mirror
from cloudstate.model import NetworkSpec
from nodeagent.net import kernel
from nodeagent.net.context import NetworkContext
from nodeagent.net.role import NetworkNodeRole
from nodeagent.server import AgentServer


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


class PingRoute:
    def __init__(self, *, context: NetworkContext, keys: Keys, mirror: Mirror,
                 role: NetworkNodeRole):
        self._ctx = context
        self._keys = keys
        self._mirror = mirror
        self._role = role

    def register(self, server: AgentServer) -> None:
        server.add_route("GET", netping.ping_path("{uuid}", "{address}"), self._ping)

    async def _ping(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        try:
            uuid = str(uuidlib.UUID(request.match_info["uuid"]))
            address = ipaddress.IPv4Address(request.match_info["address"])
        except ValueError:
            return _refuse(400, "not a network uuid and an IPv4 address")
        kv = self._mirror.get(self._keys.network(uuid))
        if kv is None:
            return _refuse(404, f"network {uuid} not found")
        spec = NetworkSpec.from_json(kv.value)
        if address not in spec.network:
            return _refuse(400, f"{address} is not in the network's range {spec.netblock}")
        namespace = self._ctx.names.netns(spec.vxid)
        if not self._role.held or namespace not in kernel.namespaces(namespace):
            return _refuse(503, f"this node does not hold network {spec.name}'s router")
        process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", namespace, "ping", "-n", "-c", str(netping.COUNT),
            "-i", str(netping.INTERVAL), "-W", str(netping.WAIT), str(address),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), netping.TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            return _refuse(504, "ping took too long")
        return web.json_response({"stdout": stdout.decode(errors="replace"),
                                  "stderr": stderr.decode(errors="replace"),
                                  "returncode": process.returncode})
