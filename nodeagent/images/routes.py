"""The image route of the agent's server: the snapshots this node holds, for
another node's agent to copy (the server has already checked its grant)."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from aiohttp import web

from nodeagent.images.sync import ImageSync, cache_key, snapshot_path
from nodeagent.server import AgentServer


class ImageRoutes:
    def __init__(self, *, server: AgentServer, images: ImageSync):
        self._server = server
        self._images = images

    def register(self) -> None:
        self._server.add_route("GET", snapshot_path("{uuid}"), self._snapshot)

    async def _snapshot(self, request: web.Request, claims: dict[str, Any]) -> web.StreamResponse:
        try:
            uuid = str(uuidlib.UUID(request.match_info["uuid"]))
        except ValueError:
            return web.json_response({"error": "not an image UUID"}, status=400)
        image = self._images.image(uuid)
        # Only what this node made itself: never a copy, never a downloaded image.
        if image is None or image.kind != "snapshot" or image.node != self._images.node:
            return web.json_response({"error": "no such snapshot on this node"}, status=404)
        cached = self._images.cache.lookup(cache_key(image))
        if cached is None:
            return web.json_response({"error": "the snapshot is not ready here"}, status=404)
        return web.FileResponse(cached.path, headers={"Content-Type": "application/octet-stream"})
