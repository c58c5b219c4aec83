"""/api/nodes: the hypervisors, for the system namespace only.

    GET /nodes, GET /nodes/<name>           as Shaken Fist shows them
    POST /nodes/<name>/maintenance          {"maintenance": true|false}: no new
                                            instances there while true
    DELETE /nodes/<name>                    forget a node that is gone (offline,
                                            holding no instances)
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import nodes
from portal.cloud.errors import BadRequest, Forbidden


@endpoint("GET")
async def node_list(request: HttpRequest, body: dict, actor: Actor) -> list:
    if not actor.is_system:
        raise Forbidden("only the system namespace may list nodes")
    return [shapes.node(record) for record in await nodes.list_nodes()]


@endpoint("GET", "DELETE")
async def node_detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    if not actor.is_system:
        raise Forbidden("only the system namespace may see nodes")
    if request.method == "DELETE":
        record = await nodes.forget(ref)
        return {**shapes.node(record), "state": "deleted"}
    return shapes.node(await nodes.get(ref))


@endpoint("POST")
async def node_maintenance(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    if not actor.is_system:
        raise Forbidden("only the system namespace may change nodes")
    wanted = body.get("maintenance")
    if not isinstance(wanted, bool):
        raise BadRequest("maintenance: give true (no new instances on the node) or false")
    return shapes.node(await nodes.set_maintenance(ref, wanted))


routes = [
    path("/nodes", node_list),
    path("/nodes/<str:ref>", node_detail),
    path("/nodes/<str:ref>/maintenance", node_maintenance),
]
