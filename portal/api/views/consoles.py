"""The serial console log through Shaken Fist's endpoint: the last N bytes
(or all of it), raw, or cleared. The node agent owns the file, so the request goes to it."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cloudstate import validation
from cloudstate.consoles import WHOLE_LOG
from portal.accounts.actor import Actor
from portal.api.framework import endpoint
from portal.cloud import instances
from portal.cloud.changes import Later
from portal.consoles import logs

DEFAULT_LENGTH = 10240
MAX_LENGTH = 16 * 1024 * 1024


def _length(body: dict[str, Any]) -> int | str:
    """``length`` as Shaken Fist reads it: the last N bytes; -1 the whole
    log (WHOLE_LOG); another negative number nothing; missing or 0 the
    default. Digits in a string are a number too."""
    value = body.get("length")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if value is None or value == 0:
        return DEFAULT_LENGTH
    if isinstance(value, bool) or not isinstance(value, int) or value > MAX_LENGTH:
        raise validation.ValidationError(
            "length", f"must be a whole number of bytes up to {MAX_LENGTH}, or -1 for the "
                      "whole log")
    if value == -1:
        return WHOLE_LOG
    return max(value, 0)


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
