"""Nodes through Shaken Fist's endpoints, for the system namespace only:
list, show, delete (one that is gone for good), and their metadata; and
sfcloud's own POST /nodes/<name>/maintenance {"maintenance": true|false}
(no new instances there while true)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import metadata, shapes
from portal.api.framework import endpoint
from portal.cloud import nodes
from portal.cloud.errors import BadRequest


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


@endpoint("POST")
async def node_maintenance(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    record = await nodes.get(actor, ref)
    wanted = body.get("maintenance")
    if not isinstance(wanted, bool):
        raise BadRequest("maintenance: give true (no new instances on the node) or false")
    return shapes.node(await nodes.set_maintenance(actor, record, wanted))


async def _find(ref: str, actor: Actor) -> nodes.NodeRecord:
    return await nodes.get(actor, ref)


routes = [
    path("/nodes", node_list),
    path("/nodes/<str:ref>", node_detail),
    path("/nodes/<str:ref>/maintenance", node_maintenance),
    *metadata.routes("/nodes/<str:ref>", _find, "node"),
]
