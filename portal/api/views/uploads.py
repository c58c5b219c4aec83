"""Uploads through Shaken Fist's endpoints: start one, send its bytes a
chunk at a time (each answered with the running total, a JSON integer, as
its client checks), cut it back after a chunk went wrong. POST
/artifacts/upload/<name> then makes it an artifact (views.artifacts).

A chunk is not JSON: it is read from the request a piece at a time and
streamed on to the upload's node (portal.cloud.uploads), never held whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import requests, shapes
from portal.api.framework import endpoint
from portal.cloud import uploads

PIECE = 256 * 1024


def pieces(request: HttpRequest) -> AsyncIterator[bytes]:
    """The request's body, a piece at a time."""

    async def read() -> AsyncIterator[bytes]:
        while piece := request.read(PIECE):
            yield piece

    return read()


@endpoint("POST")
async def create(request: HttpRequest, body: dict, actor: Actor) -> Any:
    upload = await uploads.create(actor, await requests.namespace_of(actor, body))
    return shapes.upload(upload)


@endpoint("GET", "POST", raw_body=True)
async def chunk(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    upload = await uploads.get(ref, actor.visible)
    if request.method == "GET":
        return shapes.upload(upload, size=await uploads.size(upload))
    return await uploads.append(actor, upload, pieces(request))


@endpoint("POST")
async def truncate(request: HttpRequest, body: dict, actor: Actor, ref: str,
                   offset: str) -> None:
    await uploads.truncate(actor, await uploads.get(ref, actor.visible), offset)
    return None


routes = [
    path("/upload", create),
    path("/upload/<str:ref>", chunk),
    path("/upload/<str:ref>/truncate/<str:offset>", truncate),
]
