"""What one does to an instance through Shaken Fist's endpoints: power
actions, snapshots, metadata. Reading needs a role in the instance's
namespace (else 404); changing anything needs member or admin (else 403)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from cloudstate import power as power_rules
from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.api import shapes
from portal.api.framework import endpoint
from portal.api.views.instances import actor, visible_to
from portal.cloud import artifacts, instances, metadata, power, snapshots


def _changing(request: HttpRequest, principal: Principal, record: instances.InstanceRecord,
              action: str):  # type: ignore[no-untyped-def]
    """The audit record around a change to ``record``, refused to viewers."""
    return audit.recording(principal, record.spec.namespace, action, "instance",
                           object_id=record.uuid, object_name=record.spec.name,
                           source=audit.source_of(request))


def power_endpoint(verb: str):  # type: ignore[no-untyped-def]
    action = power_rules.API_ACTIONS[verb]

    @endpoint("POST")
    async def view(request: HttpRequest, body: dict, principal: Principal, ref: str) -> None:
        record = await instances.get(ref, visible_to(principal))
        async with _changing(request, principal, record, verb):
            principal.require_operate(record.spec.namespace, f"instance {record.uuid}")
            await power.request(record, action, actor(principal))
        return None

    view.__name__ = f"instance_{verb}"
    return view


@endpoint("GET", "POST")
async def snapshot(request: HttpRequest, body: dict, principal: Principal, ref: str) -> Any:
    record = await instances.get(ref, visible_to(principal))
    if request.method == "POST":
        async with _changing(request, principal, record, "snapshot") as entry:
            principal.require_operate(record.spec.namespace, f"instance {record.uuid}")
            taken = await snapshots.request(record, all_disks=bool(body.get("all")),
                                            device=body.get("device"), actor=actor(principal))
            entry.detail = ", ".join(f"{image.device}: {image.uuid}" for image in taken)
        return {image.device: {"artifact_uuid": image.uuid, "blob_uuid": image.uuid,
                               "source_url": image.source_url} for image in taken}
    found = await artifacts.list_records(None, kind="snapshot", instance_uuid=record.uuid)
    return [shapes.snapshot(item) for item in sorted(found, key=lambda r: r.image.created_at)]


@endpoint("PUT", "POST", "DELETE")
async def metadata_item(request: HttpRequest, body: dict, principal: Principal, ref: str,
                        key: str) -> None:
    record = await instances.get(ref, visible_to(principal))
    deleting = request.method == "DELETE"
    async with _changing(request, principal, record,
                         "delete-metadata" if deleting else "set-metadata") as entry:
        entry.detail = key
        principal.require_operate(record.spec.namespace, f"instance {record.uuid}")
        if deleting:
            await metadata.delete_item(record, key, actor(principal))
        else:
            await metadata.set_item(record, key, body.get("value"), actor(principal))
    return None


routes = [
    *(path(f"/instances/<str:ref>/{verb}", power_endpoint(verb))
      for verb in power_rules.API_ACTIONS),
    path("/instances/<str:ref>/snapshot", snapshot),
    path("/instances/<str:ref>/metadata/<str:key>", metadata_item),
]
