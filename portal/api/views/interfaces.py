"""Network interfaces: show, float and defloat (Shaken Fist's endpoints)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.keys import Principal
from portal.api.framework import endpoint
from portal.api.views.instances import visible_to
from portal.cloud import interfaces


@endpoint("GET")
async def detail(request: HttpRequest, body: dict, principal: Principal, uuid: str) -> dict:
    record = await interfaces.get(uuid, visible_to(principal))
    return (await interfaces.views([record.spec]))[0]


@endpoint("POST")
async def float_interface(request: HttpRequest, body: dict, principal: Principal,
                          uuid: str) -> None:
    await interfaces.float_interface(await interfaces.get(uuid, visible_to(principal)))
    return None


@endpoint("POST")
async def defloat_interface(request: HttpRequest, body: dict, principal: Principal,
                            uuid: str) -> None:
    await interfaces.defloat_interface(await interfaces.get(uuid, visible_to(principal)))
    return None


routes = [
    path("/interfaces/<str:uuid>", detail),
    path("/interfaces/<str:uuid>/float", float_interface),
    path("/interfaces/<str:uuid>/defloat", defloat_interface),
]
