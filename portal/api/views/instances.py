"""Instances through Shaken Fist's endpoints."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import metadata, requests, shapes
from portal.api.framework import endpoint
from portal.cloud import hotplug, instances, networks
from portal.cloud import interfaces as nics
from portal.cloud.changes import Later
from portal.cloud.errors import NotFound


@endpoint("GET", "POST", "DELETE")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        record = await instances.create(actor, namespace, Later(
            lambda: requests.instance_request(body), name=str(body.get("name", ""))))
        return await _view(record)
    if request.method == "DELETE":
        return await instances.delete_all(actor, await requests.deleting_scope(actor, body),
                                          confirm=body.get("confirm") is True)
    records = await instances.list_instances(await requests.listing_scope(actor, body),
                                             include_deleted=bool(body.get("all")))
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


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> dict:
    record = await instances.get(ref, actor.visible)
    if request.method == "DELETE":
        # Shaken Fist's client sends the namespace given with --namespace:
        # the instance must be in it. (A GET's namespace is ignored, as there.)
        if body.get("namespace"):
            namespace = await requests.namespace_of(actor, body)
            if record.spec.namespace != namespace:
                raise NotFound(f"instance {ref} is not in namespace {namespace}")
        record = await instances.delete(actor, record)
    return await _view(record)


@endpoint("GET", "POST")
async def interfaces(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    """The instance's interfaces; POST hot-plugs one more (``{"network": netdesc}``)."""
    record = await instances.get(ref, actor.visible)
    if request.method == "POST":
        added = await hotplug.attach(actor, record, Later(lambda: requests.netdesc(body)))
        return (await nics.views([added]))[0]
    return await nics.views(await nics.of_instance(record.spec))


@endpoint("DELETE")
async def interface_detail(request: HttpRequest, body: dict, actor: Actor, ref: str,
                           uuid: str) -> dict:
    """Unplug one interface (sfcloud's own: Shaken Fist has no such call)."""
    record = await instances.get(ref, actor.visible)
    removed = await hotplug.detach(actor, record, uuid)
    return (await nics.views([removed]))[0]


async def _find(ref: str, actor: Actor) -> instances.InstanceRecord:
    return await instances.get(ref, actor.visible)


routes = [
    path("/instances", collection),
    path("/instances/<str:ref>", detail),
    *metadata.routes("/instances/<str:ref>", _find, "instance"),
    path("/instances/<str:ref>/interfaces", interfaces),
    path("/instances/<str:ref>/interfaces/<str:uuid>", interface_detail),
]
