"""Nodes through Shaken Fist's endpoints, for the system namespace only:
list, show, delete (one that is gone for good), and their metadata."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import requests, shapes
from portal.api.framework import endpoint
from portal.cloud import metadata as metadata_service
from portal.cloud import nodes
from portal.cloud.changes import Later


@endpoint("GET")
async def node_list(request: HttpRequest, body: dict, actor: Actor) -> list:
    nodes.require_system(actor)
    return [shapes.node(record) for record in await nodes.list_nodes()]


@endpoint("GET", "DELETE")
async def node_detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    record = await nodes.get(actor, ref)
    if request.method == "DELETE":
        record = await nodes.delete(actor, record)
    return shapes.node(record)


@endpoint("GET", "POST")
async def metadata(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    """The node's metadata; POST sets one key, as PUT .../metadata/<key> does."""
    record = await nodes.get(actor, ref)
    if request.method == "POST":
        await metadata_service.set_item(actor, record, Later(lambda: requests.metadata_key(body)),
                                        Later(lambda: requests.metadata_value(body)))
        return None
    return record.spec.metadata


@endpoint("PUT", "DELETE")
async def metadata_item(request: HttpRequest, body: dict, actor: Actor, ref: str,
                        key: str) -> None:
    record = await nodes.get(actor, ref)
    if request.method == "DELETE":
        await metadata_service.delete_item(actor, record, key)
    else:
        await metadata_service.set_item(actor, record, key,
                                        Later(lambda: requests.metadata_value(body)))
    return None


routes = [
    path("/nodes", node_list),
    path("/nodes/<str:ref>", node_detail),
    path("/nodes/<str:ref>/metadata", metadata),
    path("/nodes/<str:ref>/metadata/<str:key>", metadata_item),
]
