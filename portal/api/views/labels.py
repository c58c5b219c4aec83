"""Labels through Shaken Fist's endpoint: POST points one at a blob (a new
version of it), GET shows it, DELETE deletes it. The path is the label's
name, or <namespace>/<name>."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import labels


@endpoint("GET", "POST", "DELETE")
async def label(request: HttpRequest, body: dict, actor: Actor, name: str) -> Any:
    if request.method == "POST":
        return shapes.artifact(await labels.update(actor, name, body.get("blob_uuid"),
                                                   body.get("max_versions")))
    if request.method == "DELETE":
        deleted = await labels.delete(actor, name)
        return None if deleted is None else shapes.artifact(deleted)
    return shapes.artifact(await labels.get(actor, name))


routes = [path("/label/<path:name>", label)]
