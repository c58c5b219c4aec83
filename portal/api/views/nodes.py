"""GET /api/nodes: the hypervisors, for the system namespace only."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import nodes
from portal.cloud.errors import Forbidden, NotFound


@endpoint("GET")
async def node_list(request: HttpRequest, body: dict, actor: Actor) -> list:
    if not actor.is_system:
        raise Forbidden("only the system namespace may list nodes")
    return [shapes.node(record) for record in await nodes.list_nodes()]


@endpoint("GET")
async def node_detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    if not actor.is_system:
        raise Forbidden("only the system namespace may see nodes")
    for record in await nodes.list_nodes():
        if record.info.name == ref:
            return shapes.node(record)
    raise NotFound(f"node {ref} not found")


routes = [
    path("/nodes", node_list),
    path("/nodes/<str:ref>", node_detail),
]
