"""The serial console log through Shaken Fist's endpoint: the last N bytes,
raw, or cleared. The node agent owns the file, so the request goes to it."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cloudstate import validation
from portal.accounts.actor import Actor
from portal.api.framework import endpoint
from portal.cloud import instances
from portal.cloud.changes import Later
from portal.consoles import logs

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
async def consoledata(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await instances.get(ref, actor.visible)
    if request.method == "DELETE":
        await logs.clear(actor, record, ref=ref)
        return None
    data = await logs.read(record, Later(lambda: _length(body)), ref=ref)
    return HttpResponse(data, content_type="application/octet-stream")


routes = [
    path("/instances/<str:ref>/consoledata", consoledata),
]
