"""Labels: a name someone gives a blob (a snapshot they took, an upload),
to start instances from with ``label:<name>``.

As in Shaken Fist a label is an artifact of type ``label`` whose source is
``sf://label/<namespace>/<name>``, and pointing it at another blob adds a
version, so it keeps what it pointed at before. A label's path is
``<name>`` (in the caller's namespace) or ``<namespace>/<name>``.
Shaken Fist's own label routes answer 500 to GET and DELETE, and write
into any namespace; here GET and DELETE work and the namespace must be
the caller's to change.
"""

from __future__ import annotations

from typing import Any

from cloudstate import storage
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import artifacts, blobs, catalogue, changes
from portal.cloud.catalogue import ArtifactRecord, Catalogue
from portal.cloud.errors import BadRequest, NotFound, NotReady

KIND = artifacts.KIND


def parse(path: str, actor: Actor) -> tuple[str, str]:
    """(namespace, name) of a label path."""
    parts = path.split("/")
    if len(parts) > 2:
        raise BadRequest(f"label {path!r}: a label is <name> or <namespace>/<name>")
    namespace = parts[0] if len(parts) == 2 else actor.namespace
    if not namespace:
        raise BadRequest("label: you belong to no namespace; name one as <namespace>/<name>")
    return namespace, artifacts.validate_name(parts[-1], "label")


def source_url(namespace: str, name: str) -> str:
    return f"sf://label/{namespace}/{name}"


async def get(actor: Actor, path: str, found: Catalogue | None = None) -> ArtifactRecord:
    namespace, name = parse(path, actor)
    found = found or await catalogue.load()
    record = artifacts.by_url(found, "label", source_url(namespace, name), namespace)
    if record is None or not catalogue.artifact_visible(record.spec, actor.visible):
        raise NotFound(f"label {name} not found in namespace {namespace}")
    return record


async def update(actor: Actor, path: str, blob_uuid: Any,
                 max_versions: Any = None) -> ArtifactRecord:
    """Point the label at a blob the caller may see (a new version of it)."""
    namespace, name = parse(path, actor)
    async with changes.changing(actor, AuditAction.LABEL, KIND, namespace=namespace,
                                object_name=name, detail=str(blob_uuid)[:64],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        if not isinstance(blob_uuid, str) or not blob_uuid:
            raise BadRequest("blob_uuid required")
        blob = await blobs.get(blob_uuid, actor.visible)
        if blob.state in (storage.INITIAL, storage.CREATING):
            raise NotReady(f"blob {blob.uuid} is still being made; try again when it is ready")
        if blob.state != storage.CREATED:
            raise NotFound(f"blob {blob.uuid} is {blob.state}")
        extra = {} if max_versions in (None, 0) else \
            {"max_versions": artifacts.max_versions(max_versions)}

        def plan(found: Catalogue) -> list[artifacts.Planned]:
            current = found.blobs.get(blob.uuid)
            if current is None or current.spec.desired == "deleted":
                raise NotFound("blob not found")
            return [artifacts.plan_version(
                found, namespace=namespace, type="label", source_url=source_url(namespace, name),
                name=name, blob=current, **extra)]

        planned = (await artifacts.commit_plans(plan, f"label {name}"))[0]
        entry.object_id = planned.artifact_uuid
    if planned.added:
        await changes.event(actor, KIND, planned.artifact_uuid, f"label now points at blob "
                            f"{blob.uuid}", operation=AuditAction.LABEL, blob=blob.uuid)
    return await artifacts.reload(planned.artifact_uuid)


async def delete(actor: Actor, path: str) -> ArtifactRecord | None:
    return await artifacts.delete(actor, await get(actor, path))
