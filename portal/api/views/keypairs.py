"""Keypairs: ssh public keys a namespace keeps (sfcloud's own endpoints;
Shaken Fist's client passes key text on create instead)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.keys import Principal
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import target_namespace, visible_to
from portal.cloud import keypairs


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        keypair = await keypairs.create(body.get("name"), body.get("public_key"), namespace)
        return shapes.keypair(keypair)
    return [shapes.keypair(k) for k in await keypairs.list_keypairs(visible_to(principal))]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, ref: str) -> Any:
    keypair = await keypairs.get(ref, visible_to(principal))
    if request.method == "DELETE":
        await keypairs.delete(keypair)
    return shapes.keypair(keypair)


routes = [
    path("/keypairs", collection),
    path("/keypairs/<str:ref>", detail),
]
