"""Networks through Shaken Fist's endpoints."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http import HttpRequest
from django.urls import path

from cloudstate import states
from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.accounts.namespaces import require_open
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import actor, target_namespace, visible_to
from portal.cloud import interfaces, networks
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound
from portal.events import log as eventlog

FLOATING_UNDELETABLE = "the floating network belongs to the cloud and can't be deleted"


def _floating_view() -> dict[str, Any]:
    pool = networks.floating_pool()
    if pool is None:
        raise NotFound("network floating not found: this cloud has no floating network")
    return {
        "uuid": networks.FLOATING_REF, "name": networks.FLOATING_REF, "namespace": "system",
        "netblock": str(pool.network), "provide_dhcp": False, "provide_nat": False,
        "provide_dns": False, "floating_gateway": None, "vxlan_id": None, "mtu": None,
        "state": states.CREATED, "error_message": None, "metadata": {}, "created": None,
        "version": shapes.SCHEMA_VERSION,
    }


async def _find(ref: str, principal: Principal) -> networks.NetworkRecord:
    if ref == networks.FLOATING_REF:
        # It is not a network a namespace owns: it has no record of its own.
        raise BadRequest("the floating network has no interfaces, metadata or events of its own")
    return await networks.get(ref, visible_to(principal))


@endpoint("GET", "POST", "DELETE")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        async with audit.recording(principal, namespace, "create", "network",
                                   object_name=str(body.get("name", ""))[:255],
                                   source=audit.source_of(request)) as entry:
            principal.require_operate(namespace, f"namespace {namespace}")
            await require_open(namespace)
            wanted = dataclasses.replace(networks.parse_request(body, namespace),
                                         actor=actor(principal))
            record = await networks.create(wanted)
            entry.object_id = record.uuid
        return shapes.network(record)
    if request.method == "DELETE":
        return await _delete_all(request, body, principal)
    scope = visible_to(principal)
    if body.get("namespace"):
        scope = frozenset({await target_namespace(principal, body)})
    records = await networks.list_networks(scope, include_deleted=bool(body.get("all")))
    return [shapes.network(record) for record in records]


async def _delete_all(request: HttpRequest, body: dict, principal: Principal) -> list[str]:
    """Delete every network that nothing active uses; networks still used by
    instances being deleted wait for them (delete-wait)."""
    namespace = await target_namespace(principal, body)
    scope = None if principal.is_system and not body.get("namespace") else frozenset({namespace})
    if scope is not None:
        principal.require_operate(namespace, f"namespace {namespace}")
    if body.get("confirm") is not True:
        raise BadRequest("confirm: deleting every network needs {\"confirm\": true}")
    records = [r for r in await networks.list_networks(scope) if r.spec.desired != "deleted"]
    for record in records:
        principal.require_operate(record.spec.namespace, f"network {record.uuid}")
    deleted, unable = [], []
    for record in records:
        try:
            await _delete(request, principal, record)
        except Conflict as exc:
            unable.append(exc.message)
        else:
            deleted.append(record.uuid)
    if unable:
        done = f"deleted {len(deleted)} network{'s' if len(deleted) != 1 else ''}; " \
            if deleted else ""
        raise Conflict(done + "; ".join(unable))
    return deleted


async def _delete(request: HttpRequest, principal: Principal,
                  record: networks.NetworkRecord) -> networks.NetworkRecord:
    async with audit.recording(principal, record.spec.namespace, "delete", "network",
                               object_id=record.uuid, object_name=record.spec.name,
                               source=audit.source_of(request)):
        principal.require_operate(record.spec.namespace, f"network {record.uuid}")
        return await networks.delete(record, actor(principal))


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, ref: str) -> dict:
    if ref == networks.FLOATING_REF:
        if not principal.is_system:
            raise NotFound("network floating not found")
        if request.method == "DELETE":
            raise Forbidden(FLOATING_UNDELETABLE)
        return _floating_view()
    record = await networks.get(ref, visible_to(principal))
    if request.method == "DELETE":
        record = await _delete(request, principal, record)
    return shapes.network(record)


@endpoint("GET")
async def network_interfaces(request: HttpRequest, body: dict, principal: Principal,
                             ref: str) -> list:
    record = await _find(ref, principal)
    return await interfaces.views(record.interfaces)


@endpoint("GET")
async def addresses(request: HttpRequest, body: dict, principal: Principal, ref: str) -> list:
    return await networks.addresses(await _find(ref, principal))


@endpoint("GET")
async def metadata(request: HttpRequest, body: dict, principal: Principal, ref: str) -> dict:
    return (await _find(ref, principal)).spec.metadata


@endpoint("PUT", "DELETE")
async def metadata_item(request: HttpRequest, body: dict, principal: Principal, ref: str,
                        key: str) -> None:
    record = await _find(ref, principal)
    namespace = record.spec.namespace
    async with audit.recording(principal, namespace, "set metadata" if request.method == "PUT"
                               else "delete metadata", "network", object_id=record.uuid,
                               object_name=record.spec.name, detail=f"key {key}"[:200],
                               source=audit.source_of(request)):
        principal.require_operate(namespace, f"network {record.uuid}")
        if request.method == "PUT":
            if "value" not in body:
                raise BadRequest("value: missing; send {\"value\": ...}")
            await networks.set_metadata(record, key, body["value"])
        else:
            await networks.delete_metadata(record, key)
    return None


@endpoint("GET")
async def events(request: HttpRequest, body: dict, principal: Principal, ref: str) -> list:
    """The network's event log: what was asked of it and what the network node did."""
    record = await _find(ref, principal)
    found = await eventlog.list_events(
        "network", record.uuid, limit=eventlog.parse_limit(body.get("limit")),
        event_type=eventlog.parse_type(body.get("event_type")))
    return [event.as_api() for event in found]


routes = [
    path("/networks", collection),
    path("/networks/<str:ref>", detail),
    path("/networks/<str:ref>/interfaces", network_interfaces),
    path("/networks/<str:ref>/addresses", addresses),
    path("/networks/<str:ref>/metadata", metadata),
    path("/networks/<str:ref>/metadata/<str:key>", metadata_item),
    path("/networks/<str:ref>/events", events),
]
