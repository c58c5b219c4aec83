"""Network interfaces: show, float and defloat (Shaken Fist's endpoints)."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.api.framework import endpoint
from portal.api.views.instances import actor, visible_to
from portal.cloud import interfaces


@endpoint("GET")
async def detail(request: HttpRequest, body: dict, principal: Principal, uuid: str) -> dict:
    record = await interfaces.get(uuid, visible_to(principal))
    return (await interfaces.views([record.spec]))[0]


async def _change(request: HttpRequest, principal: Principal, uuid: str, floating: bool) -> None:
    record = await interfaces.get(uuid, visible_to(principal))
    spec = record.spec
    async with audit.recording(principal, spec.namespace, "float" if floating else "defloat",
                               "interface", object_id=spec.uuid,
                               source=audit.source_of(request)):
        principal.require_operate(spec.namespace, f"interface {spec.uuid}")
        change = interfaces.float_interface if floating else interfaces.defloat_interface
        await change(record, actor(principal))


@endpoint("POST")
async def float_interface(request: HttpRequest, body: dict, principal: Principal,
                          uuid: str) -> None:
    await _change(request, principal, uuid, True)
    return None


@endpoint("POST")
async def defloat_interface(request: HttpRequest, body: dict, principal: Principal,
                            uuid: str) -> None:
    await _change(request, principal, uuid, False)
    return None


routes = [
    path("/interfaces/<str:uuid>", detail),
    path("/interfaces/<str:uuid>/float", float_interface),
    path("/interfaces/<str:uuid>/defloat", defloat_interface),
]
