"""Instances through Shaken Fist's endpoints."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.accounts.models import Namespace
from portal.accounts.namespaces import require_open
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import instances, networks
from portal.cloud import interfaces as nics
from portal.cloud.errors import BadRequest, NotFound


def actor(principal: Principal) -> str:
    """Who asked, as the event log names them (as the audit trail does)."""
    return principal.name


def visible_to(principal: Principal) -> frozenset[str] | None:
    return principal.visible


async def target_namespace(principal: Principal, body: dict[str, Any]) -> str:
    """The namespace a request acts in: the one it names, else the caller's own."""
    wanted = body.get("namespace") or principal.namespace
    if not wanted:
        raise BadRequest("namespace: you belong to no namespace; name one")
    if not isinstance(wanted, str) or not principal.can_read(wanted) \
            or not await Namespace.objects.filter(name=wanted).aexists():
        raise NotFound(f"namespace {wanted} not found")
    return wanted


@endpoint("GET", "POST", "DELETE")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        async with audit.recording(principal, namespace, "create", "instance",
                                   object_name=str(body.get("name", ""))[:255],
                                   source=audit.source_of(request)) as entry:
            principal.require_operate(namespace, f"namespace {namespace}")
            await require_open(namespace)
            wanted = dataclasses.replace(instances.parse_request(body, namespace),
                                         actor=actor(principal))
            record = await instances.create(wanted)
            entry.object_id = record.uuid
        return await _view(record)
    if request.method == "DELETE":
        return await _delete_all(request, body, principal)
    scope = visible_to(principal)
    if body.get("namespace"):
        scope = frozenset({await target_namespace(principal, body)})
    records = await instances.list_instances(scope, include_deleted=bool(body.get("all")))
    return await _views(records)


async def _view(record: instances.InstanceRecord) -> dict:
    """The instance with its interfaces embedded, as Shaken Fist shows it."""
    return shapes.instance(record, await nics.views(await nics.of_instance(record.spec)))


async def _views(records: list[instances.InstanceRecord]) -> list[dict]:
    # One read of every interface rather than one per instance.
    wanted = {record.uuid for record in records}
    found = [i for i in await networks.all_interfaces() if i.instance_uuid in wanted]
    by_instance: dict[str, list[dict]] = {}
    for view in await nics.views(sorted(found, key=lambda i: i.order)):
        by_instance.setdefault(view["instance_uuid"], []).append(view)
    return [shapes.instance(record, by_instance.get(record.uuid, [])) for record in records]


async def _delete_all(request: HttpRequest, body: dict, principal: Principal) -> list[str]:
    namespace = await target_namespace(principal, body)
    scope = None if principal.is_system and not body.get("namespace") else frozenset({namespace})
    if scope is not None:
        principal.require_operate(namespace, f"namespace {namespace}")
    if body.get("confirm") is not True:
        raise BadRequest("confirm: deleting every instance needs {\"confirm\": true}")
    records = await instances.list_instances(scope)
    for record in records:
        principal.require_operate(record.spec.namespace, f"instance {record.uuid}")
    deleted = []
    for record in records:
        await _delete(request, principal, record)
        deleted.append(record.uuid)
    return deleted


async def _delete(request: HttpRequest, principal: Principal,
                  record: instances.InstanceRecord) -> instances.InstanceRecord:
    async with audit.recording(principal, record.spec.namespace, "delete", "instance",
                               object_id=record.uuid, object_name=record.spec.name,
                               source=audit.source_of(request)):
        principal.require_operate(record.spec.namespace, f"instance {record.uuid}")
        return await instances.delete(record, actor(principal))


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, ref: str) -> dict:
    record = await instances.get(ref, visible_to(principal))
    if request.method == "DELETE":
        record = await _delete(request, principal, record)
    return await _view(record)


@endpoint("GET")
async def metadata(request: HttpRequest, body: dict, principal: Principal, ref: str) -> dict:
    record = await instances.get(ref, visible_to(principal))
    return record.spec.metadata


@endpoint("GET")
async def interfaces(request: HttpRequest, body: dict, principal: Principal, ref: str) -> list:
    record = await instances.get(ref, visible_to(principal))
    return await nics.views(await nics.of_instance(record.spec))


routes = [
    path("/instances", collection),
    path("/instances/<str:ref>", detail),
    path("/instances/<str:ref>/metadata", metadata),
    path("/instances/<str:ref>/interfaces", interfaces),
]
