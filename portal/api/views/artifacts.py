"""Artifacts (images) through Shaken Fist's endpoints: cache one by URL
ahead of time, list them, show one, delete one."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import requests, shapes
from portal.api.framework import endpoint
from portal.cloud import artifacts


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        record = await artifacts.cache(actor, body.get("url"), namespace,
                                       shared=bool(body.get("shared")), name=body.get("name"))
        return shapes.artifact(record)
    records = await artifacts.list_records(actor.visible)
    node = body.get("node")
    if isinstance(node, str) and node:
        records = [r for r in records if node in r.by_node]
    return [shapes.artifact(record) for record in records]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await artifacts.get(ref, actor.visible)
    if request.method == "DELETE":
        return shapes.artifact(artifacts.ImageRecord(image=await artifacts.delete(actor, record)))
    return shapes.artifact(record)


routes = [
    path("/artifacts", collection),
    path("/artifacts/<str:ref>", detail),
]
