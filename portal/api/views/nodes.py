"""Nodes through Shaken Fist's endpoints, for the system namespace only:
list, show, delete (one that is gone for good), and their metadata; and
sfcloud's own POST /nodes/<name>/maintenance {"maintenance": true|false}
(no new instances there while true); and the join tokens a new machine
joins the cloud with (system admins: /join-tokens)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import metadata, shapes
from portal.api.framework import endpoint
from portal.cloud import jointokens, nodes
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


@endpoint("GET", "POST")
async def join_tokens(request: HttpRequest, body: dict, actor: Actor) -> Any:
    """GET: the join tokens (no secrets); POST {"etcd": bool, "ttl": s}: a new one,
    its secret and the command for the new machine shown this once."""
    if request.method == "GET":
        return [shapes.join_token(record) for record in await jointokens.list_tokens(actor)]
    made = await jointokens.create(actor, jointokens.asked(body))
    return shapes.made_join_token(made, jointokens.invitation(made.token))


@endpoint("DELETE")
async def join_token_detail(request: HttpRequest, body: dict, actor: Actor,
                            token_id: str) -> dict:
    return shapes.join_token(await jointokens.revoke(actor, token_id))


async def _find(ref: str, actor: Actor) -> nodes.NodeRecord:
    return await nodes.get(actor, ref)


routes = [
    path("/join-tokens", join_tokens),
    path("/join-tokens/<str:token_id>", join_token_detail),
    path("/nodes", node_list),
    path("/nodes/<str:ref>", node_detail),
    path("/nodes/<str:ref>/maintenance", node_maintenance),
    *metadata.routes("/nodes/<str:ref>", _find, "node"),
]
