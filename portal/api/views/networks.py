"""Networks through Shaken Fist's endpoints."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from cloudstate import states
from portal.accounts.keys import Principal
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import target_namespace, visible_to
from portal.cloud import interfaces, networks
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

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
        record = await networks.create(networks.parse_request(body, namespace))
        return shapes.network(record)
    if request.method == "DELETE":
        return await _delete_all(body, principal)
    scope = visible_to(principal)
    if body.get("namespace") and principal.is_system:
        scope = frozenset({await target_namespace(principal, body)})
    records = await networks.list_networks(scope, include_deleted=bool(body.get("all")))
    return [shapes.network(record) for record in records]


async def _delete_all(body: dict, principal: Principal) -> list[str]:
    """Delete every network that nothing active uses; networks still used by
    instances being deleted wait for them (delete-wait)."""
    if body.get("confirm") is not True:
        raise BadRequest("confirm: deleting every network needs {\"confirm\": true}")
    namespace = await target_namespace(principal, body)
    scope = None if principal.is_system and not body.get("namespace") else frozenset({namespace})
    deleted, unable = [], []
    for record in await networks.list_networks(scope):
        if record.spec.desired == "deleted":
            continue
        try:
            await networks.delete(record)
        except Conflict as exc:
            unable.append(exc.message)
        else:
            deleted.append(record.uuid)
    if unable:
        done = f"deleted {len(deleted)} network{'s' if len(deleted) != 1 else ''}; " \
            if deleted else ""
        raise Conflict(done + "; ".join(unable))
    return deleted


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
        record = await networks.delete(record)
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
    if request.method == "PUT":
        if "value" not in body:
            raise BadRequest("value: missing; send {\"value\": ...}")
        await networks.set_metadata(record, key, body["value"])
    else:
        await networks.delete_metadata(record, key)
    return None


@endpoint("GET")
async def events(request: HttpRequest, body: dict, principal: Principal, ref: str) -> list:
    """What happened to the network, newest first: its creation and deletion
    as asked for, and what the network node did."""
    record = await _find(ref, principal)
    spec = record.spec
    found = [{"type": "audit", "timestamp": spec.created_at, "fqdn": None, "duration": None,
              "message": "network created", "extra": {"netblock": spec.netblock}}]
    if spec.deleted_at is not None:
        found.append({"type": "audit", "timestamp": spec.deleted_at, "fqdn": None,
                      "duration": None, "message": "network deletion requested", "extra": None})
    for entry in record.observed.history if record.observed else []:
        found.append({"type": entry.get("type", "status"), "timestamp": entry["timestamp"],
                      "fqdn": entry.get("node"), "duration": None,
                      "message": entry["message"], "extra": None})
    return sorted(found, key=lambda event: event["timestamp"], reverse=True)


routes = [
    path("/networks", collection),
    path("/networks/<str:ref>", detail),
    path("/networks/<str:ref>/interfaces", network_interfaces),
    path("/networks/<str:ref>/addresses", addresses),
    path("/networks/<str:ref>/metadata", metadata),
    path("/networks/<str:ref>/metadata/<str:key>", metadata_item),
    path("/networks/<str:ref>/events", events),
]
