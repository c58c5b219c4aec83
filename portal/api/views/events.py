"""GET /<kind>/<ref>/events: an object's event log, newest first.

The body may carry ``limit`` (default 100; a numeric string as Shaken
Fist's client sends it; negative for all) and ``event_type``; both are
honoured, so the root page advertises ``events-by-type``. A type no event
has (or an unknown one) is an empty list, not an error.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api.framework import endpoint
from portal.cloud import artifacts, blobs, instances, nodes
from portal.events import log as eventlog


async def api_events(kind: str, uuid: str, body: dict) -> list[dict]:
    """One object's events as the API lists them."""
    limit = eventlog.parse_limit(body.get("limit"))
    event_type = eventlog.parse_type(body.get("event_type"))
    found = await eventlog.list_events(kind, uuid, limit=limit, event_type=event_type)
    return [event.as_api() for event in found]


@endpoint("GET")
async def instance_events(request: HttpRequest, body: dict, actor: Actor,
                          ref: str) -> list:
    record = await instances.get(ref, actor.visible)
    return await api_events("instance", record.uuid, body)


@endpoint("GET")
async def artifact_events(request: HttpRequest, body: dict, actor: Actor,
                          ref: str) -> list:
    record = await artifacts.get(ref, actor.visible)
    return await api_events("image", record.uuid, body)


@endpoint("GET")
async def blob_events(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    record = await blobs.get(ref, actor.visible)
    return await api_events("blob", record.uuid, body)


@endpoint("GET")
async def node_events(request: HttpRequest, body: dict, actor: Actor, ref: str) -> list:
    return await api_events("node", (await nodes.get(actor, ref)).uuid, body)


routes = [
    path("/instances/<str:ref>/events", instance_events),
    path("/artifacts/<str:ref>/events", artifact_events),
    path("/blobs/<str:ref>/events", blob_events),
    path("/nodes/<str:ref>/events", node_events),
]
