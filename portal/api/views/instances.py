"""Instances through Shaken Fist's endpoints."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.keys import Principal
from portal.accounts.models import Namespace
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import instances
from portal.cloud.errors import BadRequest, NotFound


def visible_to(principal: Principal) -> frozenset[str] | None:
    return None if principal.is_system else frozenset({principal.namespace})


async def target_namespace(principal: Principal, body: dict[str, Any]) -> str:
    """The namespace a request acts in: its own, or any for the system namespace."""
    wanted = body.get("namespace")
    if not wanted or wanted == principal.namespace:
        return principal.namespace
    if not principal.is_system:
        raise NotFound(f"namespace {wanted} not found")
    if not isinstance(wanted, str) or not await Namespace.objects.filter(name=wanted).aexists():
        raise NotFound(f"namespace {wanted} not found")
    return wanted


@endpoint("GET", "POST", "DELETE")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        record = await instances.create(instances.parse_request(body, namespace))
        return shapes.instance(record)
    if request.method == "DELETE":
        return await _delete_all(body, principal)
    scope = visible_to(principal)
    if body.get("namespace") and principal.is_system:
        scope = frozenset({await target_namespace(principal, body)})
    records = await instances.list_instances(scope, include_deleted=bool(body.get("all")))
    return [shapes.instance(record) for record in records]


async def _delete_all(body: dict, principal: Principal) -> list[str]:
    if body.get("confirm") is not True:
        raise BadRequest("confirm: deleting every instance needs {\"confirm\": true}")
    namespace = await target_namespace(principal, body)
    scope = None if principal.is_system and not body.get("namespace") else frozenset({namespace})
    deleted = []
    for record in await instances.list_instances(scope):
        await instances.delete(record)
        deleted.append(record.uuid)
    return deleted


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, ref: str) -> dict:
    record = await instances.get(ref, visible_to(principal))
    if request.method == "DELETE":
        record = await instances.delete(record)
    return shapes.instance(record)


@endpoint("GET")
async def metadata(request: HttpRequest, body: dict, principal: Principal, ref: str) -> dict:
    record = await instances.get(ref, visible_to(principal))
    return record.spec.metadata


@endpoint("GET")
async def interfaces(request: HttpRequest, body: dict, principal: Principal, ref: str) -> list:
    await instances.get(ref, visible_to(principal))
    return []


routes = [
    path("/instances", collection),
    path("/instances/<str:ref>", detail),
    path("/instances/<str:ref>/metadata", metadata),
    path("/instances/<str:ref>/interfaces", interfaces),
]
