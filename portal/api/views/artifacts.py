"""Artifacts (images) through Shaken Fist's endpoints: cache one by URL
ahead of time, list them, show one, delete one."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.keys import Principal
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import actor, target_namespace, visible_to
from portal.cloud import artifacts


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        namespace = await target_namespace(principal, body)
        record = await artifacts.cache(body.get("url"), namespace,
                                       shared=bool(body.get("shared")), name=body.get("name"),
                                       actor=actor(principal))
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
        image = await artifacts.delete(record, visible_to(principal), actor(principal))
        return shapes.artifact(artifacts.ImageRecord(image=image))
    return shapes.artifact(record)


routes = [
    path("/artifacts", collection),
    path("/artifacts/<str:ref>", detail),
]
