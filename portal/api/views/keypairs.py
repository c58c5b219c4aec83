"""Keypairs: ssh public keys a namespace keeps (sfcloud's own endpoints;
Shaken Fist's client passes key text on create instead)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import requests, shapes
from portal.api.framework import endpoint
from portal.cloud import keypairs


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        keypair = await keypairs.create(actor, body.get("name"), body.get("public_key"),
                                        namespace)
        return shapes.keypair(keypair)
    return [shapes.keypair(k) for k in await keypairs.list_keypairs(actor.visible)]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    keypair = await keypairs.get(ref, actor.visible)
    if request.method == "DELETE":
        await keypairs.delete(actor, keypair)
    return shapes.keypair(keypair)


routes = [
    path("/keypairs", collection),
    path("/keypairs/<str:ref>", detail),
]
