"""Artifacts through Shaken Fist's endpoints: cache one by URL, list, show
and delete them, their versions (how many to keep, deleting one), sharing
from the system namespace, deleting a namespace's all (``namespace
clean``), their metadata, and making one from an upload."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts.actor import Actor
from portal.api import metadata, requests, shapes
from portal.api.framework import endpoint
from portal.cloud import artifacts, uploads
from portal.cloud.catalogue import ArtifactRecord


async def _find(ref: str, actor: Actor) -> ArtifactRecord:
    return await artifacts.get(ref, actor.visible)


@endpoint("GET", "POST", "DELETE")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        namespace = await requests.namespace_of(actor, body)
        record = await artifacts.cache(
            actor, body.get("url"), namespace,
            shared=requests.flag(body.get("shared"), "shared", default=False),
            name=body.get("name"))
        return shapes.artifact(record)
    if request.method == "DELETE":
        return await artifacts.delete_all(actor, await requests.deleting_scope(actor, body),
                                          confirm=body.get("confirm") is True)
    records = await artifacts.list_records(actor.visible)
    node = body.get("node")
    if isinstance(node, str) and node:
        # Those whose newest version is on that node, as Shaken Fist filters.
        records = [r for r in records if r.newest and node in r.newest.locations]
    return [shapes.artifact(record) for record in records]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await _find(ref, actor)
    if request.method == "DELETE":
        deleted = await artifacts.delete(actor, record)
        return None if deleted is None else shapes.artifact(deleted)
    return shapes.artifact(record)


@endpoint("GET", "POST")
async def versions(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
    record = await _find(ref, actor)
    if request.method == "POST":
        await artifacts.set_max_versions(actor, record, body.get("max_versions"))
        return None
    return [{**shapes.blob(record.blobs[v.blob_uuid]), "index": v.index}
            for v in record.found.shown if v.blob_uuid in record.blobs]


@endpoint("DELETE")
async def version(request: HttpRequest, body: dict, actor: Actor, ref: str,
                  index: str) -> Any:
    record = await artifacts.delete_version(actor, await _find(ref, actor), index)
    return shapes.artifact(record)


def _sharing(shared: bool):  # type: ignore[no-untyped-def]
    @endpoint("POST")
    async def view(request: HttpRequest, body: dict, actor: Actor, ref: str) -> Any:
        return shapes.artifact(await artifacts.set_shared(actor, await _find(ref, actor), shared))

    view.__name__ = "artifact_share" if shared else "artifact_unshare"
    return view


@endpoint("POST")
async def upload(request: HttpRequest, body: dict, actor: Actor, name: str) -> Any:
    namespace = await requests.namespace_of(actor, body)
    record = await uploads.to_artifact(
        actor, name, namespace, upload_uuid=body.get("upload_uuid"),
        blob_uuid=body.get("blob_uuid"), source_url=body.get("source_url"),
        shared=requests.flag(body.get("shared"), "shared", default=False),
        artifact_type=body.get("artifact_type"), sha512=body.get("sha512"))
    return shapes.artifact(record)


routes = [
    path("/artifacts", collection),
    # Before /artifacts/<ref>/...: "upload" is this route's, not an artifact's name.
    path("/artifacts/upload/<str:name>", upload),
    path("/artifacts/<str:ref>", detail),
    path("/artifacts/<str:ref>/versions", versions),
    path("/artifacts/<str:ref>/versions/<str:index>", version),
    path("/artifacts/<str:ref>/share", _sharing(True)),
    path("/artifacts/<str:ref>/unshare", _sharing(False)),
    *metadata.routes("/artifacts/<str:ref>", _find, "artifact"),
]
