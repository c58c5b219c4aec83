"""What one does to an instance through Shaken Fist's endpoints: power
actions, snapshots, metadata. Reading needs a role in the instance's
namespace (else 404); the services refuse changes to viewers (403)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from cloudstate import power as power_rules
from portal.accounts.actor import Actor
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import instances, power, snapshots


def power_endpoint(verb: str):  # type: ignore[no-untyped-def]
    action = power_rules.API_ACTIONS[verb]

    @endpoint("POST")
    async def view(request: HttpRequest, body: dict, actor: Actor, ref: str) -> None:
        await power.request(actor, await instances.get(ref, actor.visible), action)
        return None

    view.__name__ = f"instance_{verb}"
    return view


@endpoint("GET", "POST")
async def snapshot(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await instances.get(ref, actor.visible)
    if request.method == "POST":
        taken = await snapshots.request(actor, record, all_disks=bool(body.get("all")),
                                        device=body.get("device"))
        return {item.device: {"artifact_uuid": item.artifact_uuid, "blob_uuid": item.blob_uuid,
                              "source_url": item.source_url} for item in taken}
    return [shapes.snapshot(artifact, version)
            for artifact, version in await snapshots.versions_of(record)]


routes = [
    *(path(f"/instances/<str:ref>/{verb}", power_endpoint(verb))
      for verb in power_rules.API_ACTIONS),
    path("/instances/<str:ref>/snapshot", snapshot),
]
