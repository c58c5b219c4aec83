"""Networks through Shaken Fist's endpoints."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from cloudstate import states
from portal.accounts.actor import Actor
from portal.api import metadata, requests, shapes
from portal.api.framework import endpoint
from portal.api.views.events import api_events
from portal.cloud import dnsentries, interfaces, netping, networks, routed
from portal.cloud.changes import Later
from portal.cloud.errors import BadRequest, Forbidden, NotFound

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
        "version": shapes.SCHEMA_VERSION, "routed": [], "dns_entries": {},
    }


async def _find(ref: str, actor: Actor) -> networks.NetworkRecord:
    if ref == networks.FLOATING_REF:
        # It is not a network a namespace owns: it has no record of its own.
        raise BadRequest("the floating network has no interfaces, metadata or events of its own")
    return await networks.get(ref, actor.visible)


@endpoint("GET", "POST", "DELETE")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        record = await networks.create(actor, namespace, Later(
            lambda: requests.network_request(body), name=str(body.get("name", ""))))
        return shapes.network(record)
    if request.method == "DELETE":
        return await networks.delete_all(actor, await requests.deleting_scope(actor, body),
                                         confirm=body.get("confirm") is True)
    records = await networks.list_networks(await requests.listing_scope(actor, body),
                                           include_deleted=bool(body.get("all")))
    return [shapes.network(record) for record in records]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    if ref == networks.FLOATING_REF:
        if not actor.is_system:
            raise NotFound("network floating not found")
        if request.method == "DELETE":
            raise Forbidden(FLOATING_UNDELETABLE)
        return _floating_view()
    record = await networks.get(ref, actor.visible)
    if request.method == "DELETE":
        record = await networks.delete(actor, record)
    return shapes.network(record)


@endpoint("GET")
async def network_interfaces(request: HttpRequest, body: dict, actor: Actor,
                             ref: str) -> list:
    record = await _find(ref, actor)
    return await interfaces.views(record.interfaces)


@endpoint("GET")
async def addresses(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    return await networks.addresses(await _find(ref, actor))


@endpoint("GET")
async def events(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    """The network's event log: what was asked of it and what the network node did."""
    return await api_events("network", (await _find(ref, actor)).uuid, body)


@endpoint("POST")
async def route(request: HttpRequest, body: dict, actor: Actor, ref: str) -> str:
    """Route an address of the floating network here; the address, as a JSON string."""
    return await routed.route(actor, await _find(ref, actor))


@endpoint("DELETE")
async def route_detail(request: HttpRequest, body: dict, actor: Actor, ref: str,
                       address: str) -> None:
    await routed.unroute(actor, await _find(ref, actor), address)
    return None


@endpoint("POST", "DELETE")
async def dns(request: HttpRequest, body: dict, actor: Actor, ref: str) -> None:
    """Extra names the network's DNS answers: POST ``{"name", "value"}``, DELETE ``{"name"}``."""
    record = await _find(ref, actor)
    if request.method == "POST":
        await dnsentries.set_entry(actor, record, body.get("name"), body.get("value"))
    else:
        await dnsentries.delete_entry(actor, record, body.get("name"))
    return None


@endpoint("GET")
async def ping(request: HttpRequest, body: dict, actor: Actor, ref: str, address: str) -> dict:
    """Ping an address of the network from its router, on the network node."""
    return await netping.ping(actor, await _find(ref, actor), address)


routes = [
    path("/networks", collection),
    path("/networks/<str:ref>", detail),
    path("/networks/<str:ref>/interfaces", network_interfaces),
    path("/networks/<str:ref>/addresses", addresses),
    *metadata.routes("/networks/<str:ref>", _find, "network"),
    path("/networks/<str:ref>/events", events),
    path("/networks/<str:ref>/route", route),
    path("/networks/<str:ref>/route/<str:address>", route_detail),
    path("/networks/<str:ref>/dns", dns),
    path("/networks/<str:ref>/ping/<str:address>", ping),
]
