"""Shaken Fist's metadata routes for a kind of object, built once:

    GET    /<things>/<ref>/metadata         the object's metadata
    POST   /<things>/<ref>/metadata         {"key": ..., "value": ...}: set one key
    PUT    /<things>/<ref>/metadata/<key>   {"value": ...}: set one key (POST too)
    DELETE /<things>/<ref>/metadata/<key>   delete one key

Each kind gives how to find an object by reference for a caller; the
service (portal.cloud.metadata) checks roles and writes audit and event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest
from django.urls import URLPattern, path

from portal.accounts.actor import Actor
from portal.api import requests
from portal.api.framework import endpoint
from portal.cloud import metadata
from portal.cloud.changes import Later

Find = Callable[[str, Actor], Awaitable[Any]]


def routes(prefix: str, find: Find, name: str) -> list[URLPattern]:
    """The two routes under ``prefix`` (such as ``/artifacts/<str:ref>``)."""

    @endpoint("GET", "POST")
    async def collection(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
        record = await find(ref, actor)
        if request.method == "GET":
            return record.spec.metadata
        # Read only once the actor may change it: a refusal for bad input is then
        # audited like any other, and someone who may not gets "forbidden" whatever they sent.
        await metadata.set_item(actor, record, Later(lambda: requests.metadata_key(body)),
                                Later(lambda: requests.metadata_value(body)))
        return None

    @endpoint("PUT", "POST", "DELETE")
    async def item(request: HttpRequest, body: dict, actor: Actor, ref: str, key: str) -> None:
        record = await find(ref, actor)
        if request.method == "DELETE":
            await metadata.delete_item(actor, record, key)
        else:
            await metadata.set_item(actor, record, key,
                                    Later(lambda: requests.metadata_value(body)))
        return None

    collection.__name__ = f"{name}_metadata"
    item.__name__ = f"{name}_metadata_item"
    return [path(f"{prefix}/metadata", collection), path(f"{prefix}/metadata/<str:key>", item)]
