"""Blobs through Shaken Fist's endpoints: list, show, find by checksum,
their metadata, and their bytes.

GET /blobs/<uuid>/data takes Shaken Fist's ``offset`` and ``limit`` query
parameters and HTTP ranges (portal.downloads).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal import downloads
from portal.accounts.actor import Actor
from portal.api import metadata, shapes
from portal.api.framework import endpoint
from portal.cloud import blobs
from portal.cloud.catalogue import BlobRecord


async def _find(ref: str, actor: Actor) -> BlobRecord:
    return await blobs.get(ref, actor.visible)


@endpoint("GET")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> list:
    return [shapes.blob(record) for record in await blobs.list_records(actor.visible)]


@endpoint("GET")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    return shapes.blob(await _find(ref, actor))


@endpoint("GET")
async def by_checksum(request: HttpRequest, body: dict, actor: Actor, algorithm: str,
                      digest: str) -> Any:
    record = await blobs.by_checksum(algorithm, digest, actor.visible)
    return None if record is None else shapes.blob(record)


@endpoint("GET")
async def data(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    return await downloads.response(request, await _find(ref, actor))


routes = [
    path("/blobs", collection),
    path("/blobs/<str:ref>", detail),
    path("/blobs/<str:ref>/data", data),
    path("/blob_checksums/<str:algorithm>/<str:digest>", by_checksum),
    *metadata.routes("/blobs/<str:ref>", _find, "blob"),
]
