"""Artifacts (images) through Shaken Fist's endpoints: cache one by URL
ahead of time, list them, show one, delete one."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.accounts.namespaces import require_open
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import actor, target_namespace, visible_to
from portal.cloud import artifacts


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        async with audit.recording(principal, namespace, "cache", "image",
                                   object_name=str(body.get("url", ""))[:255],
                                   source=audit.source_of(request)) as entry:
            principal.require_operate(namespace, f"namespace {namespace}")
            await require_open(namespace)
            record = await artifacts.cache(body.get("url"), namespace,
                                           shared=bool(body.get("shared")),
                                           name=body.get("name"), actor=actor(principal))
            entry.object_id, entry.object_name = record.uuid, record.image.name
        return shapes.artifact(record)
    records = await artifacts.list_records(visible_to(principal))
    node = body.get("node")
    if isinstance(node, str) and node:
        records = [r for r in records if node in r.by_node]
    return [shapes.artifact(record) for record in records]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, ref: str) -> Any:
    record = await artifacts.get(ref, visible_to(principal))
    if request.method == "DELETE":
        async with audit.recording(principal, record.image.namespace, "delete", "image",
                                   object_id=record.uuid, object_name=record.image.name,
                                   source=audit.source_of(request)):
            # A shared image is seen by everyone but belongs to its namespace
            # (artifacts.delete says so); otherwise viewers may only look.
            if principal.can_read(record.image.namespace):
                principal.require_operate(record.image.namespace, f"image {record.uuid}")
            image = await artifacts.delete(record, visible_to(principal), actor(principal))
        return shapes.artifact(artifacts.ImageRecord(image=image))
    return shapes.artifact(record)


routes = [
    path("/artifacts", collection),
    path("/artifacts/<str:ref>", detail),
]
