"""Keypairs: ssh public keys a namespace keeps (sfcloud's own endpoints;
Shaken Fist's client passes key text on create instead)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.accounts.namespaces import require_open
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import target_namespace, visible_to
from portal.cloud import keypairs


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        async with audit.recording(principal, namespace, "create", "keypair",
                                   object_name=str(body.get("name", ""))[:255],
                                   source=audit.source_of(request)) as entry:
            principal.require_operate(namespace, f"namespace {namespace}")
            await require_open(namespace)
            keypair = await keypairs.create(body.get("name"), body.get("public_key"), namespace)
            entry.object_id = keypair.uuid
        return shapes.keypair(keypair)
    return [shapes.keypair(k) for k in await keypairs.list_keypairs(visible_to(principal))]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, ref: str) -> Any:
    keypair = await keypairs.get(ref, visible_to(principal))
    if request.method == "DELETE":
        async with audit.recording(principal, keypair.namespace, "delete", "keypair",
                                   object_id=keypair.uuid, object_name=keypair.name,
                                   source=audit.source_of(request)):
            principal.require_operate(keypair.namespace, f"keypair {keypair.name}")
            await keypairs.delete(keypair)
    return shapes.keypair(keypair)


routes = [
    path("/keypairs", collection),
    path("/keypairs/<str:ref>", detail),
]
