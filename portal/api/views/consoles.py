"""The serial console log through Shaken Fist's endpoint: the last N bytes,
raw, or cleared. The node agent owns the file, so the request goes to it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cloudstate import validation
from cloudstate.consoles import consolelog_path
from portal.accounts import audit
from portal.accounts.keys import Principal
from portal.api.framework import endpoint
from portal.api.views.instances import visible_to
from portal.cloud import instances
from portal.cloud.errors import NotFound
from portal.consoles import agent

DEFAULT_LENGTH = 10240
MAX_LENGTH = 16 * 1024 * 1024


def _length(body: dict[str, Any]) -> int:
    value = body.get("length", DEFAULT_LENGTH)
    if value is None:
        return DEFAULT_LENGTH
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LENGTH:
        raise validation.ValidationError("length", f"must be a whole number of bytes, 0 to "
                                                   f"{MAX_LENGTH}")
    return value


@endpoint("GET", "DELETE")
async def consoledata(request: HttpRequest, body: dict, principal: Principal, ref: str) -> Any:
    record = await instances.get(ref, visible_to(principal))
    if record.spec.desired == "deleted":
        raise NotFound(f"instance {ref} is deleted; its console log went with it")
    route = consolelog_path(record.uuid)
    if request.method == "DELETE":
        async with audit.recording(principal, record.spec.namespace, "clear-log", "instance",
                                   object_id=record.uuid, object_name=record.spec.name,
                                   source=audit.source_of(request)):
            principal.require_operate(record.spec.namespace, f"instance {ref}")
            await agent.request(record.spec.node, "DELETE", route)
        return None
    data = await agent.request(record.spec.node, "GET", route,
                               params={"length": str(_length(body))})
    return HttpResponse(data, content_type="application/octet-stream")


routes = [
    path("/instances/<str:ref>/consoledata", consoledata),
]
