"""Security groups, their rules and address sets; and the filtering of an
interface (sfcloud's own endpoints: Shaken Fist planned security groups and
never built them)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import metadata, requests, shapes
from portal.api.framework import endpoint
from portal.cloud import addresssets, filtering, interfaces, networks, secgroups
from portal.cloud.changes import Later
from portal.cloud.errors import NotFound
from portal.events import log as eventlog


async def _shown(records: list[secgroups.GroupRecord]) -> list[dict[str, Any]]:
    """Groups as the API shows them: remote ends named, users counted."""
    groups, sets, users = await _names_and_users()
    names = {**groups, **sets}
    return [shapes.security_group(record, names, users[record.uuid]) for record in records]


async def _names_and_users() -> tuple[dict[str, str], dict[str, str], Counter[str]]:
    groups = {r.uuid: r.spec.name for r in await secgroups.list_groups(None)}
    sets = {r.uuid: r.spec.name for r in await addresssets.list_sets(None)}
    users: Counter[str] = Counter(uuid for iface in await networks.all_interfaces()
                                  for uuid in iface.security_groups)
    return groups, sets, users


async def _listing(actor: Actor, body: dict) -> Any:
    scope = await requests.listing_scope(actor, body)
    if scope is not None:
        # Every namespace has its default group, made when first looked for.
        for namespace in sorted(scope):
            await secgroups.ensure_default(namespace)
    return scope


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        record = await secgroups.create(actor, namespace, Later(
            lambda: requests.security_group_request(body), name=str(body.get("name", ""))))
        return (await _shown([record]))[0]
    return await _shown(await secgroups.list_groups(await _listing(actor, body)))


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await secgroups.get(ref, actor.visible)
    shown = (await _shown([record]))[0]
    if request.method == "DELETE":
        await secgroups.delete(actor, record)
        return {**shown, "state": "deleted"}
    return shown


@endpoint("GET", "POST")
async def rules(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await secgroups.get(ref, actor.visible)
    if request.method == "POST":
        record, _ = await secgroups.add_rules(actor, record,
                                              Later(lambda: requests.rules_to_add(body)))
    return (await _shown([record]))[0]["rules"]


@endpoint("GET", "DELETE")
async def rule(request: HttpRequest, body: dict, actor: Actor, ref: str, rule_uuid: str) -> Any:
    record = await secgroups.get(ref, actor.visible)
    found = next((r for r in record.spec.rules if r.uuid == rule_uuid), None)
    if found is None and request.method == "GET":
        raise NotFound(f"security group {record.spec.name} has no rule {rule_uuid}")
    if request.method == "DELETE":
        await secgroups.remove_rule(actor, record, rule_uuid)
        return None
    groups, sets, _ = await _names_and_users()
    assert found is not None
    return shapes.security_rule(found, {**groups, **sets})


@endpoint("GET")
async def group_interfaces(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    """The interfaces that use the group, with what their hypervisors have in force."""
    record = await secgroups.get(ref, actor.visible)
    return await interfaces.views(await secgroups.interfaces_using(record.uuid))


async def _find(ref: str, actor: Actor) -> secgroups.GroupRecord:
    return await secgroups.get(ref, actor.visible)


async def _events(kind: str, uuid: str, body: dict) -> list:
    found = await eventlog.list_events(
        kind, uuid, limit=eventlog.parse_limit(body.get("limit")),
        event_type=eventlog.parse_type(body.get("event_type")))
    return [event.as_api() for event in found]


@endpoint("GET")
async def events(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    record = await secgroups.get(ref, actor.visible)
    return await _events(record.kind, record.uuid, body)


# --- address sets ------------------------------------------------------------------------------


@endpoint("GET", "POST")
async def address_sets(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        record = await addresssets.create(actor, namespace, Later(
            lambda: requests.address_set_request(body), name=str(body.get("name", ""))))
        return shapes.address_set(record)
    scope = await requests.listing_scope(actor, body)
    return [shapes.address_set(r) for r in await addresssets.list_sets(scope)]


@endpoint("GET", "PUT", "DELETE")
async def address_set(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await addresssets.get(ref, actor.visible)
    if request.method == "PUT":
        record = await addresssets.set_cidrs(actor, record,
                                             Later(lambda: requests.given_field(body, "cidrs")))
    elif request.method == "DELETE":
        await addresssets.delete(actor, record)
        return {**shapes.address_set(record), "state": "deleted"}
    return shapes.address_set(record)


@endpoint("GET")
async def address_set_events(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    record = await addresssets.get(ref, actor.visible)
    return await _events(record.kind, record.uuid, body)


# --- an interface's filtering ------------------------------------------------------------------


async def _interface(uuid: str, actor: Actor) -> dict:
    record = await interfaces.get(uuid, actor.visible)
    return (await interfaces.views([record.spec]))[0]


@endpoint("GET", "PUT")
async def interface_groups(request: HttpRequest, body: dict, actor: Actor, uuid: str) -> Any:
    """GET: the interface as shown, with its groups and what is in force;
    PUT {"security_groups": [...]}: its groups become these, live."""
    if request.method == "PUT":
        await filtering.set_security_groups(
            actor, await interfaces.get(uuid, actor.visible),
            Later(lambda: requests.group_refs(requests.given_field(body, "security_groups"),
                                              "security_groups") or []))
    return await _interface(uuid, actor)


@endpoint("PUT")
async def interface_port_security(request: HttpRequest, body: dict, actor: Actor,
                                  uuid: str) -> dict:
    await filtering.set_port_security(
        actor, await interfaces.get(uuid, actor.visible),
        Later(lambda: requests.flag(requests.given_field(body, "port_security"),
                                    "port_security", default=True)))
    return await _interface(uuid, actor)


@endpoint("PUT")
async def interface_allowed_addresses(request: HttpRequest, body: dict, actor: Actor,
                                      uuid: str) -> dict:
    await filtering.set_allowed_addresses(
        actor, await interfaces.get(uuid, actor.visible),
        Later(lambda: requests.given_field(body, "allowed_addresses")))
    return await _interface(uuid, actor)


routes = [
    path("/security-groups", collection),
    path("/security-groups/<str:ref>", detail),
    path("/security-groups/<str:ref>/rules", rules),
    path("/security-groups/<str:ref>/rules/<str:rule_uuid>", rule),
    path("/security-groups/<str:ref>/interfaces", group_interfaces),
    *metadata.routes("/security-groups/<str:ref>", _find, "security_group"),
    path("/security-groups/<str:ref>/events", events),
    path("/address-sets", address_sets),
    path("/address-sets/<str:ref>", address_set),
    path("/address-sets/<str:ref>/events", address_set_events),
    path("/interfaces/<str:uuid>/security-groups", interface_groups),
    path("/interfaces/<str:uuid>/port-security", interface_port_security),
    path("/interfaces/<str:uuid>/allowed-addresses", interface_allowed_addresses),
]
