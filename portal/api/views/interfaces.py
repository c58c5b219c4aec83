"""Network interfaces: show, float and defloat (Shaken Fist's endpoints)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api.framework import endpoint
from portal.cloud import interfaces


@endpoint("GET")
async def detail(request: HttpRequest, body: dict, actor: Actor, uuid: str) -> dict:
    record = await interfaces.get(uuid, actor.visible)
    return (await interfaces.views([record.spec]))[0]


@endpoint("POST")
async def float_interface(request: HttpRequest, body: dict, actor: Actor, uuid: str) -> None:
    await interfaces.float_interface(actor, await interfaces.get(uuid, actor.visible))
    return None


@endpoint("POST")
async def defloat_interface(request: HttpRequest, body: dict, actor: Actor, uuid: str) -> None:
    await interfaces.defloat_interface(actor, await interfaces.get(uuid, actor.visible))
    return None


routes = [
    path("/interfaces/<str:uuid>", detail),
    path("/interfaces/<str:uuid>/float", float_interface),
    path("/interfaces/<str:uuid>/defloat", defloat_interface),
]
