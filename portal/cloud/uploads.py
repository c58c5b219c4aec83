"""Uploads: a file sent a chunk at a time, then made an artifact's version.

Where the bytes go: an upload is made on one node (the live hypervisor
with the most free disk) and each chunk the portal receives is streamed on
to that node's agent as it arrives (portal.consoles.agent, with a grant
signed for exactly that request), which appends it to the upload's file.
So the bytes land where images live, no portal keeps a copy, any portal
process can take any chunk (they all reach the node), and the portal holds
only a small buffer of a chunk at a time. Converting the upload seals the
file into a blob on that node (hashed with sha512 there, and checked
against a checksum the caller gives) and records the blob and the new
artifact version in one transaction. Other nodes copy the blob when they
first need it.

An upload belongs to the namespace that made it: others get 404. One never
converted is forgotten after SFCLOUD_UPLOAD_LIFETIME (a week, as in Shaken
Fist).
"""

from __future__ import annotations

import json
import time
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from cloudstate.etcd import Delete
from cloudstate.model import Blob, Upload
from cloudstate.validation import shown
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit
from portal.accounts.actor import Actor
from portal.accounts.models import SYSTEM_NAMESPACE, AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import artifacts, blobs, changes, nodes, ownership, quotas, store
from portal.cloud.catalogue import ArtifactRecord, Catalogue
from portal.cloud.errors import BadRequest, CloudError, Conflict, Forbidden, NotFound
from portal.cloud.refs import Namespaces, visible
from portal.cloud.versions import Change
from portal.consoles import agent

KIND = ObjectKind.UPLOAD
# One chunk may take this long to reach the node (a slow client's 2 MiB).
CHUNK_TIMEOUT = 600.0
# Sealing hashes the whole file on its node.
SEAL_TIMEOUT = 3600.0
ARTIFACT_TYPES = ("image", "other")


async def create(actor: Actor, namespace: str) -> Upload:
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        # Early, so that nobody sends gigabytes the seal would refuse (the
        # quota itself is checked when the bytes become a version).
        await quotas.guard(namespace, {"image_bytes": 0})
        upload = Upload(uuid=str(uuidlib.uuid4()), namespace=namespace,
                        node=await nodes.storage_node(), created_at=time.time())
        await store.etcd().put(store.keys().upload(upload.uuid), upload.to_json())
        entry.object_id = upload.uuid
    return upload


async def get(ref: str, namespaces: Namespaces) -> Upload:
    try:
        kv = await store.etcd().get(store.keys().upload(str(uuidlib.UUID(ref))))
    except ValueError:
        kv = None
    upload = Upload.from_json(kv.value) if kv is not None else None
    if upload is None or not visible(upload.namespace, namespaces):
        raise NotFound("upload not found")
    return upload


def _path(upload: Upload, *rest: str) -> str:
    return "/".join((f"/uploads/{upload.uuid}", *rest))


def _size(body: bytes) -> int:
    return int(json.loads(body)["size"])


async def size(upload: Upload) -> int:
    """Bytes received so far."""
    return _size(await agent.request(upload.node, "GET", _path(upload)))


async def append(actor: Actor, upload: Upload, chunks: AsyncIterator[bytes]) -> int:
    """Stream ``chunks`` on to the upload's node as they come; the new total."""
    actor.require_operate(upload.namespace, f"upload {upload.uuid}")
    try:
        return _size(await agent.request(upload.node, "POST", _path(upload), data=chunks,
                                         timeout=CHUNK_TIMEOUT))
    except agent.AgentRefused as exc:
        raise _refusal(exc) from exc


async def truncate(actor: Actor, upload: Upload, offset: object) -> int:
    actor.require_operate(upload.namespace, f"upload {upload.uuid}")
    if isinstance(offset, str) and offset.isdigit():
        offset = int(offset)
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BadRequest(f"offset: {shown(offset)} is not a whole number of bytes")
    try:
        return _size(await agent.request(upload.node, "POST",
                                         _path(upload, "truncate", str(offset))))
    except agent.AgentRefused as exc:
        raise _refusal(exc) from exc


def _refusal(exc: agent.AgentRefused) -> BadRequest | Conflict:
    return BadRequest(exc.message) if exc.status < 500 else Conflict(exc.message)


def checked_sha512(value: Any) -> str | None:
    """A sha512 the caller expects of an upload (none: None), normalised."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not blobs.SHA512.fullmatch(value.strip().lower()):
        raise BadRequest("sha512: must be 128 hexadecimal digits")
    return value.strip().lower()


async def to_artifact(actor: Actor, name: Any, namespace: str, *, upload_uuid: Any = None,
                      blob_uuid: Any = None, source_url: Any = None, shared: bool = False,
                      artifact_type: Any = None, sha512: Any = None) -> ArtifactRecord:
    """An upload (or a blob already here, found by its checksum) as the
    newest version of the namespace's artifact ``name``."""
    async with changes.changing(actor, AuditAction.UPLOAD, artifacts.KIND, namespace=namespace,
                                object_name=str(name)[:255],
                                what=f"namespace {namespace}") as entry:
        name = artifacts.validate_name(name)
        if upload_uuid and blob_uuid:
            raise BadRequest("only specify one of upload_uuid and blob_uuid")
        if not upload_uuid and not blob_uuid:
            raise BadRequest("one of upload_uuid or blob_uuid is required")
        if shared and namespace != SYSTEM_NAMESPACE:
            raise Forbidden("only the system namespace can create shared artifacts")
        artifact_type = artifact_type or "image"
        if artifact_type not in ARTIFACT_TYPES:
            raise BadRequest(f"artifact_type: must be one of {', '.join(ARTIFACT_TYPES)}")
        if source_url in (None, ""):
            source_url = f"sf://upload/{namespace}/{name}"
        if not isinstance(source_url, str) or len(source_url) > 2048:
            raise BadRequest("source_url: must be a string of at most 2048 characters")
        expected = checked_sha512(sha512)
        await require_open(namespace)
        fields = {"namespace": namespace, "type": artifact_type, "source_url": source_url,
                  "name": name, "shared": bool(shared)}
        if upload_uuid:
            planned = await _from_upload(actor, str(upload_uuid), fields, expected)
        else:
            planned = await _from_blob(actor, str(blob_uuid), fields)
        entry.object_id = planned.artifact_uuid
        entry.detail = f"blob {planned.blob_uuid}"
    if planned.added:
        await changes.event(actor, artifacts.KIND, planned.artifact_uuid,
                            f"new version uploaded (blob {planned.blob_uuid})",
                            operation=AuditAction.UPLOAD, blob=planned.blob_uuid)
    return await artifacts.reload(planned.artifact_uuid)


async def _from_upload(actor: Actor, ref: str, fields: dict[str, Any],
                       expected: str | None) -> artifacts.Planned:
    upload = await get(ref, actor.visible)
    actor.require_operate(upload.namespace, f"upload {upload.uuid}")
    sealed = str(uuidlib.uuid4())
    try:
        facts = json.loads(await agent.request(
            upload.node, "POST", _path(upload, "seal", sealed), timeout=SEAL_TIMEOUT,
            claims={"sha512": expected} if expected else None))
    except agent.AgentRefused as exc:
        raise _refusal(exc) from exc
    blob = Blob(uuid=sealed, namespace=fields["namespace"], origin="upload", node=upload.node,
                size=int(facts["size"]), sha512=str(facts["sha512"]))

    def plan(found: Catalogue) -> list[artifacts.Planned]:
        return [artifacts.plan_version(found, blob=blob, **fields)]

    gone = Change([], [Delete(store.keys().upload(upload.uuid))])
    try:
        planned = (await artifacts.commit_plans(plan, f"artifact {fields['name']}", gone))[0]
    except CloudError:  # a conflict, or over quota: the bytes are nobody's
        await _drop_sealed(upload.node, sealed)
        raise
    if not planned.added:
        # The same bytes as the newest version: keep that, drop these.
        await _drop_sealed(upload.node, sealed)
    return planned


async def _drop_sealed(node: str, blob_uuid: str) -> None:
    try:
        await agent.request(node, "DELETE", f"/blobs/{blob_uuid}")
    except (agent.AgentRefused, agent.AgentUnavailable):
        pass  # the node forgets unrecorded bytes by itself, a while later


async def _from_blob(actor: Actor, ref: str, fields: dict[str, Any]) -> artifacts.Planned:
    blob = await blobs.get(ref, actor.visible)
    if blob.state != "created":
        raise Conflict(f"blob {blob.uuid} is {blob.state}, not usable")

    def plan(found: Catalogue) -> list[artifacts.Planned]:
        current = found.blobs.get(blob.uuid)
        if current is None or current.spec.desired == "deleted":
            raise NotFound("blob not found")
        return [artifacts.plan_version(found, blob=current, **fields)]

    return (await artifacts.commit_plans(plan, f"artifact {fields['name']}"))[0]


async def expire(now: float) -> int:
    """Forget uploads never converted within their lifetime (their nodes
    then remove the bytes)."""
    etcd, keys = store.etcd(), store.keys()
    kvs, _ = await etcd.get_prefix(keys.uploads)
    expired = 0
    for kv in kvs:
        upload = Upload.from_json(kv.value)
        if now - upload.created_at > settings.UPLOAD_LIFETIME:
            result = await etcd.txn([], [Delete(kv.key)])
            expired += result.succeeded
            await audit.record(Actor.portal(), upload.namespace, AuditAction.DELETE, KIND,
                               object_id=upload.uuid, detail="never converted: expired")
    return expired


async def owned(namespace: str) -> list[str]:
    kvs, _ = await store.etcd().get_prefix(store.keys().uploads)
    return [u.uuid for kv in kvs if (u := Upload.from_json(kv.value)).namespace == namespace]


ownership.register("uploads", owned)
