"""The storage routes of the agent's server (it has already checked the
grant: the portal or another node's agent signed exactly this request).

    GET    /blobs/<uuid>                    a blob's bytes (HTTP ranges honoured): for
                                            another node copying it, or the portal
                                            serving a download
    DELETE /blobs/<uuid>                    drop a sealed blob no record claims (the
                                            portal found it duplicates another)
    GET    /uploads/<uuid>                  {"size": bytes received so far}
    POST   /uploads/<uuid>                  append the request body; {"size": new total}
    POST   /uploads/<uuid>/truncate/<n>     cut back to n bytes; {"size": n}
    POST   /uploads/<uuid>/seal/<blob>      make the upload the blob <blob> (checked
                                            against the grant's ``sha512``, if any);
                                            {"size", "sha512", "format", "virtual_size"}
    DELETE /uploads/<uuid>                  forget an upload
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from nodeagent.images.blobs import StoredBlob
from nodeagent.images.errors import ImageError
from nodeagent.images.sync import BlobSync, blob_path
from nodeagent.images.uploads import UploadError, UploadStore
from nodeagent.server import AgentServer

READ_CHUNK = 256 * 1024


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status)


def _uuid(request: web.Request, name: str) -> str | None:
    try:
        return str(uuidlib.UUID(request.match_info[name]))
    except ValueError:
        return None


def _facts(stored: StoredBlob) -> dict[str, Any]:
    return {"uuid": stored.uuid, "size": stored.size, "sha512": stored.sha512,
            "format": stored.format, "virtual_size": stored.virtual_size}


class StorageRoutes:
    def __init__(self, *, server: AgentServer, blobs: BlobSync, uploads: UploadStore):
        self._server = server
        self._blobs = blobs
        self._uploads = uploads

    def register(self) -> None:
        add = self._server.add_route
        add("GET", blob_path("{uuid}"), self._blob)
        add("DELETE", blob_path("{uuid}"), self._drop_blob)
        add("GET", "/uploads/{uuid}", self._upload_size)
        add("POST", "/uploads/{uuid}", self._append)
        add("POST", "/uploads/{uuid}/truncate/{offset}", self._truncate)
        add("POST", "/uploads/{uuid}/seal/{blob}", self._seal)
        add("DELETE", "/uploads/{uuid}", self._drop_upload)

    # --- blobs ----------------------------------------------------------------------

    async def _blob(self, request: web.Request, claims: dict[str, Any]) -> web.StreamResponse:
        uuid = _uuid(request, "uuid")
        if uuid is None:
            return _error(400, "not a blob UUID")
        stored = self._blobs.blobs.lookup(uuid)
        blob = self._blobs.blob(uuid)
        if stored is None and blob is not None and blob.origin == "file":
            try:
                stored = await self._blobs.ensure(blob)
            except ImageError as exc:
                return _error(404, exc.message)
        if stored is None:
            return _error(404, f"blob {uuid} is not held on {self._blobs.node}")
        return web.FileResponse(stored.path,
                                headers={"Content-Type": "application/octet-stream"})

    async def _drop_blob(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        uuid = _uuid(request, "uuid")
        if uuid is None:
            return _error(400, "not a blob UUID")
        if self._blobs.blob(uuid) is not None:
            return _error(409, f"blob {uuid} is recorded; it goes when its record does")
        self._blobs.blobs.remove(uuid)
        return web.json_response(None)

    # --- uploads ----------------------------------------------------------------------

    async def _upload_size(self, request: web.Request,
                           claims: dict[str, Any]) -> web.Response:
        uuid = _uuid(request, "uuid")
        if uuid is None:
            return _error(400, "not an upload UUID")
        return web.json_response({"size": self._uploads.size(uuid)})

    async def _append(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        uuid = _uuid(request, "uuid")
        if uuid is None:
            return _error(400, "not an upload UUID")

        async def body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                yield chunk

        try:
            size = await self._uploads.append(uuid, body())
        except UploadError as exc:
            return _error(exc.status, exc.message)
        return web.json_response({"size": size})

    async def _truncate(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        uuid = _uuid(request, "uuid")
        try:
            offset = int(request.match_info["offset"])
        except ValueError:
            return _error(400, "the offset is not an integer")
        if uuid is None:
            return _error(400, "not an upload UUID")
        try:
            size = await self._uploads.truncate(uuid, offset)
        except UploadError as exc:
            return _error(exc.status, exc.message)
        return web.json_response({"size": size})

    async def _seal(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        uuid, into = _uuid(request, "uuid"), _uuid(request, "blob")
        if uuid is None or into is None:
            return _error(400, "not an upload and a blob UUID")
        expected = claims.get("sha512")
        try:
            stored = await self._uploads.seal(
                uuid, self._blobs.blobs, into,
                expected_sha512=expected if isinstance(expected, str) else None)
        except UploadError as exc:
            return _error(exc.status, exc.message)
        except ImageError as exc:
            return _error(409, exc.message)
        return web.json_response(_facts(stored))

    async def _drop_upload(self, request: web.Request, claims: dict[str, Any]) -> web.Response:
        uuid = _uuid(request, "uuid")
        if uuid is None:
            return _error(400, "not an upload UUID")
        self._uploads.remove(uuid)
        return web.json_response(None)
