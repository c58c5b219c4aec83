"""Artifacts as things people manage, with Shaken Fist's semantics: cache
one by URL, keep versions of it (uploads, snapshots and labels add them),
limit how many, delete one version or all, share one from the system
namespace with everybody.

An artifact's record lists its versions' blobs; what it shows (its state,
which versions, how many instances use them) is derived from a
``catalogue`` read (portal.cloud.catalogue). Adding a version goes through
``portal.cloud.versions`` so the rules hold for every kind of artifact.
Blobs no version and no instance uses any more are deleted after each
change that may have dropped one (``blobs.collect_garbage``).
"""

from __future__ import annotations

import posixpath
import re
import time
import uuid as uuidlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings

from cloudstate import quotas, storage, validation
from cloudstate.etcd import Compare, Delete
from cloudstate.model import Artifact, Blob
from cloudstate.validation import shown
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit
from portal.accounts.actor import Actor
from portal.accounts.models import SYSTEM_NAMESPACE, AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import blobs, catalogue, changes, nodes, ownership, store, urlcheck, versions
from portal.cloud.catalogue import ArtifactRecord, BlobRecord, Catalogue
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound
from portal.cloud.quotas import guard as quota_guard
from portal.cloud.refs import Namespaces, is_uuid
from portal.cloud.versions import Change

KIND = ObjectKind.IMAGE
MAX_NAME = 255
_NAME = re.compile(rf"[\x20-\x2e\x30-\x7e]{{1,{MAX_NAME}}}")  # printable ASCII but "/"
MAX_MAX_VERSIONS = 100
_ATTEMPTS = 8


# --- names --------------------------------------------------------------------------------


def default_name(url: str) -> str:
    """What the URL's last path element calls the artifact, made name-safe."""
    last = posixpath.basename(unquote(urlsplit(url).path)) or urlsplit(url).hostname or "image"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.") or "image"
    return name[:63]


def validate_name(value: object, field: str = "name") -> str:
    """Any name Shaken Fist's client sends for a file: 1-255 printable ASCII
    characters (spaces inside too), no slash, nothing around it."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value != value.strip():
        raise validation.ValidationError(
            field, f"{shown(value)} is not a valid artifact name: use 1-{MAX_NAME} characters, "
                   "printable ASCII without a slash")
    return value


# --- reading --------------------------------------------------------------------------------


async def list_records(namespaces: Namespaces, *, type: str | None = None,
                       instance_uuid: str | None = None) -> list[ArtifactRecord]:
    return [r for r in (await catalogue.load()).artifacts_visible(namespaces)
            if (type is None or r.spec.type == type)
            and (instance_uuid is None or r.spec.instance_uuid == instance_uuid)]


async def get(ref: str, namespaces: Namespaces, found: Catalogue | None = None
              ) -> ArtifactRecord:
    """By UUID (deleted ones too, until forgotten) or by name (active ones:
    the caller's own first, then shared ones). A name several artifacts
    share is refused, as Shaken Fist refuses it."""
    found = found or await catalogue.load()
    if is_uuid(ref):
        record = found.artifacts.get(ref.lower())
        if record is None or not catalogue.artifact_visible(record.spec, namespaces):
            raise NotFound("artifact not found")
        return record
    named = [r for r in found.artifacts_visible(namespaces) if r.spec.name == ref]
    own = [r for r in named if namespaces is None or r.spec.namespace in namespaces]
    named = own or named
    if len(named) > 1:
        where = ", ".join(sorted({r.spec.namespace for r in named}))
        raise BadRequest(f'multiple artifacts have the name "{ref}" in namespace {where}: '
                         "use the UUID")
    if not named:
        raise NotFound("artifact not found")
    return named[0]


def by_url(found: Catalogue, type: str, url: str, namespace: str) -> ArtifactRecord | None:
    """The namespace's own active artifact of this type and URL."""
    return next((r for r in found.artifacts.values()
                 if r.spec.desired != "deleted" and r.spec.namespace == namespace
                 and r.spec.type == type and r.spec.source_url == url), None)


def own_or_shared(found: Catalogue, type: str, url: str, namespace: str
                  ) -> ArtifactRecord | None:
    """Shaken Fist's lookup for a caller: their own artifact of the URL,
    else a shared one."""
    own = by_url(found, type, url, namespace)
    if own is not None:
        return own
    return next((r for r in sorted(found.artifacts.values(), key=lambda r: r.spec.created_at)
                 if r.spec.desired != "deleted" and r.spec.shared and r.spec.type == type
                 and r.spec.source_url == url), None)


async def reload(uuid: str) -> ArtifactRecord:
    record = (await catalogue.load()).artifacts.get(uuid)
    if record is None:
        raise NotFound("artifact not found")
    return record


# --- adding versions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One artifact gaining a version: its uuid, the version's blob, whether
    a version was added (not when the blob equals the newest one), and the
    transaction pieces."""

    artifact_uuid: str
    blob_uuid: str
    added: bool
    change: Change
    namespace: str = ""
    # What it takes of the namespace's quotas (cloudstate.quotas.artifact_kind).
    asked: dict[str, int] = field(default_factory=dict)


def plan_version(found: Catalogue, *, namespace: str, type: str, source_url: str, name: str,
                 blob: Blob | BlobRecord, shared: bool = False, precache: bool = False,
                 **fields: Any) -> Planned:
    """Add ``blob`` (a new one to record, or one already recorded) as the
    newest version of the namespace's artifact of this type and URL,
    making the artifact if it has none. As in Shaken Fist, a blob equal to
    the newest version (the same blob, or the same sha512) adds nothing."""
    if isinstance(blob, Blob):
        blob_change, sha512, size = versions.create_blob(blob), blob.sha512, blob.size
    else:
        blob_change, sha512, size = versions.use_blob(blob), blob.facts.sha512, blob.facts.size
    existing = by_url(found, type, source_url, namespace)
    if existing is None:
        artifact = Artifact(uuid=str(uuidlib.uuid4()), name=name, namespace=namespace,
                            source_url=source_url, type=type, shared=shared,
                            precache=precache, **fields).with_version(blob.uuid)
        return Planned(artifact.uuid, blob.uuid, True,
                       versions.create_artifact(artifact) + blob_change, namespace,
                       quota_asked(type, new_artifact=True, size=size))
    newest = existing.newest
    if newest is not None and (newest.uuid == blob.uuid
                               or (sha512 and newest.facts.sha512 == sha512)):
        return Planned(existing.uuid, newest.uuid, False, Change(), namespace)
    # Versions nobody will see again (pruned before) leave the record now.
    kept = {i: b for i, b in existing.spec.versions.items() if i not in existing.found.dropped}
    artifact = existing.spec.replace(versions=kept).with_version(blob.uuid).replace(
        shared=existing.spec.shared or shared, precache=existing.spec.precache or precache)
    return Planned(existing.uuid, blob.uuid, True,
                   versions.rewrite_artifact(existing, artifact) + blob_change, namespace,
                   quota_asked(type, new_artifact=False, size=size))


def quota_asked(artifact_type: str, *, new_artifact: bool, size: int | None) -> dict[str, int]:
    """What a new version (of a new artifact, or not) takes of the quotas:
    one more image or snapshot, and its bytes (0 when not known yet: a fetch
    or a snapshot still to be made needs room left)."""
    kinds = quotas.artifact_kind(artifact_type)
    if kinds is None:
        return {}
    count_kind, bytes_kind = kinds
    asked = {bytes_kind: size or 0}
    return {count_kind: 1, **asked} if new_artifact else asked


async def quota_change(planned: list[Planned]) -> Change:
    """The quota guard of every namespace the plans take from (their sums)."""
    by_namespace: dict[str, dict[str, int]] = {}
    for plan in planned:
        asked = by_namespace.setdefault(plan.namespace, {})
        for kind, amount in plan.asked.items():
            asked[kind] = asked.get(kind, 0) + amount
    change = Change()
    for namespace, asked in sorted(by_namespace.items()):
        if asked:
            change += await quota_guard(namespace, asked)
    return change


async def commit_plans(plan: Callable[[Catalogue], list[Planned]], what: str,
                       extra: Change | None = None) -> list[Planned]:
    """Plan against a fresh catalogue and commit it all in one transaction,
    planning again if something changed meanwhile. A new version may push
    an old one past its artifact's limit: its blob goes at once if unused."""
    for _ in range(_ATTEMPTS):
        planned = plan(await catalogue.load())
        change = sum((p.change for p in planned), extra or Change())
        change += await quota_change(planned)
        result = await store.etcd().txn(change.compares, change.ops)
        if result.succeeded:
            if any(p.added for p in planned):
                await blobs.collect_garbage()
            return planned
    raise Conflict(f"{what} is changing too often right now; try again")


# --- caching a URL -------------------------------------------------------------------------


async def cache(actor: Actor, url: object, namespace: str, *, shared: bool = False,
                name: object = None) -> ArtifactRecord:
    """Fetch a URL as an image artifact, onto every hypervisor. Asking again
    for the same URL returns the same artifact, and (as in Shaken Fist)
    looks for a newer file there: a new version if its length or
    Last-Modified changed. Anything may be fetched: whether it is a usable
    disk is checked when an instance starts from it."""
    async with changes.changing(actor, AuditAction.CACHE, KIND, namespace=namespace,
                                object_name=str(url or "")[:255],
                                what=f"namespace {namespace}") as entry:
        if shared and namespace != SYSTEM_NAMESPACE:
            raise Forbidden("only the system namespace can create shared artifacts")
        await require_open(namespace)
        url = validation.image_url(url, "url")
        wanted = validate_name(name) if name else default_name(url)
        # Only what must never be fetched is refused now; the rest is the
        # artifact's state (error, with the reason) once the fetch is tried.
        await urlcheck.check(url, "url")
        record, fetching = await _cache(url, namespace, shared=shared, name=wanted)
        entry.object_id, entry.object_name = record.uuid, record.spec.name
    if fetching:
        await changes.event(actor, KIND, record.uuid, "caching requested",
                            operation=AuditAction.CACHE, url=url)
    return record


async def _cache(url: str, namespace: str, *, shared: bool,
                 name: str) -> tuple[ArtifactRecord, bool]:
    """(the artifact, whether a fetch was asked for now)."""
    for _ in range(_ATTEMPTS):
        found = await catalogue.load()
        # The system namespace's shared artifact is its own, apart from
        # anyone's private one of the same URL; others get theirs, else a
        # shared one, as in Shaken Fist.
        existing = by_url(found, "image", url, namespace) if namespace == SYSTEM_NAMESPACE \
            else own_or_shared(found, "image", url, namespace)
        if existing is not None and existing.spec.namespace != namespace:
            return existing, False  # someone else's, shared with everyone
        fetch = existing is None or existing.making is None  # none under way already
        change = Change()
        if existing is None:
            artifact = Artifact(uuid=str(uuidlib.uuid4()), name=name, namespace=namespace,
                                source_url=url, shared=shared, precache=True)
        else:
            artifact = existing.spec.replace(shared=existing.spec.shared or shared,
                                             precache=True)
            if not fetch and artifact == existing.spec:
                return existing, False
        if fetch:
            change += await quota_guard(namespace, quota_asked(
                "image", new_artifact=existing is None, size=None))
            newest = existing.newest if existing is not None else None
            blob = Blob(uuid=str(uuidlib.uuid4()), namespace=namespace, origin="fetch",
                        node=await nodes.storage_node(), source_url=url,
                        replaces=newest.uuid if newest else None)
            artifact = artifact.with_version(blob.uuid)
            change += versions.create_blob(blob)
        change += versions.create_artifact(artifact) if existing is None else \
            versions.rewrite_artifact(existing, artifact)
        result = await store.etcd().txn(change.compares, change.ops)
        if result.succeeded:
            return await reload(artifact.uuid), fetch
    raise Conflict("too many requests for this URL at once; try again")


# --- changing one ---------------------------------------------------------------------------


def _owned(actor: Actor, record: ArtifactRecord) -> None:
    """Only the artifact's own namespace changes it, even one shared with all."""
    namespace = record.spec.namespace
    if not actor.can_read(namespace):
        raise Forbidden(f"artifact {record.spec.name} belongs to namespace {namespace}, "
                        "which alone may change it")
    actor.require_operate(namespace, f"artifact {record.uuid}")


def _auditing(actor: Actor, record: ArtifactRecord, action: AuditAction,
              detail: str = "") -> AbstractAsyncContextManager[audit.Entry]:
    return audit.recording(actor, record.spec.namespace, action, KIND, object_id=record.uuid,
                           object_name=record.spec.name[:255], detail=detail)


async def _rewrite(record: ArtifactRecord, change: Callable[[ArtifactRecord], Artifact]
                   ) -> ArtifactRecord:
    current = record
    for _ in range(_ATTEMPTS):
        artifact = change(current)
        try:
            await versions.rewrite_artifact(current, artifact).commit(f"artifact {record.uuid}")
        except Conflict:
            current = await reload(record.uuid)
            continue
        if artifact.desired == "deleted" and current.spec.desired != "deleted":
            await versions.release_url(artifact)
        await blobs.collect_garbage()
        return await reload(record.uuid)
    raise Conflict(f"artifact {record.uuid} is changing too often right now; try again")


async def update(record: ArtifactRecord, change: Callable[[ArtifactRecord], Artifact]
                 ) -> ArtifactRecord:
    """Rewrite the artifact's record with ``change`` (metadata, say). The
    caller is a service that has checked the Actor's role."""
    return await _rewrite(record, change)


async def delete(actor: Actor, record: ArtifactRecord) -> ArtifactRecord | None:
    """Delete an artifact (None if it was deleted already). Its blobs stay
    while instances still start from them, as in Shaken Fist."""
    async with _auditing(actor, record, AuditAction.DELETE):
        _owned(actor, record)
        if record.spec.desired == "deleted":
            return None
        deleted = await _rewrite(record, lambda current: current.spec.replace(
            desired="deleted", deleted_at=time.time()))
    await changes.event(actor, KIND, record.uuid, "deleted", operation=AuditAction.DELETE)
    return deleted


async def delete_all(actor: Actor, scope: Namespaces, *, confirm: bool) -> list[str]:
    """Delete every active artifact a namespace owns (``namespace clean``);
    refused before anything is deleted if one of them may not be."""
    if scope is None:
        raise BadRequest("namespace: the system namespace must name the namespace to clean")
    changes.may_delete_all(actor, KIND, scope, confirm=confirm)
    owned = [r for r in await list_records(scope) if r.spec.namespace in scope]
    for record in owned:
        actor.require_operate(record.spec.namespace, f"artifact {record.uuid}")
    for record in owned:
        await delete(actor, record)
    return [record.uuid for record in owned]


def version_index(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return str(int(value))
    raise BadRequest("version index is not an integer")


async def delete_version(actor: Actor, record: ArtifactRecord, index: object) -> ArtifactRecord:
    """Delete one version; deleting the last one deletes the artifact."""
    key = version_index(index)
    async with _auditing(actor, record, AuditAction.DELETE_VERSION, detail=f"version {key}"):
        _owned(actor, record)

        def change(current: ArtifactRecord) -> Artifact:
            if key not in current.spec.versions:
                raise NotFound("artifact index not found")
            left = {i: b for i, b in current.spec.versions.items() if i != key}
            gone = {} if left else {"desired": "deleted", "deleted_at": time.time()}
            return current.spec.replace(versions=left, **gone)

        updated = await _rewrite(record, change)
    await changes.event(actor, KIND, record.uuid, f"version {key} deleted",
                        operation=AuditAction.DELETE_VERSION, index=int(key))
    return updated


def max_versions(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest("max version is not an integer")
    if not 1 <= value <= MAX_MAX_VERSIONS:
        raise BadRequest(f"max_versions must be between 1 and {MAX_MAX_VERSIONS}, not {value}")
    return value


async def set_max_versions(actor: Actor, record: ArtifactRecord, value: object
                           ) -> ArtifactRecord:
    """Keep at most ``value`` versions; older ones go at once."""
    async with _auditing(actor, record, AuditAction.SET_MAX_VERSIONS,
                         detail=str(value)[:50]):
        _owned(actor, record)
        wanted = max_versions(value)

        def change(current: ArtifactRecord) -> Artifact:
            spec = current.spec.replace(max_versions=wanted)
            found = storage.versions(spec, lambda b: current.blobs[b].state
                                     if b in current.blobs else storage.DELETED)
            return spec.replace(versions={i: b for i, b in spec.versions.items()
                                          if i not in found.dropped})

        updated = await _rewrite(record, change)
    await changes.event(actor, KIND, record.uuid, f"at most {wanted} versions kept",
                        operation=AuditAction.SET_MAX_VERSIONS, max_versions=wanted)
    return updated


async def set_shared(actor: Actor, record: ArtifactRecord, shared: bool) -> ArtifactRecord:
    """Share a system namespace artifact with every namespace, or stop."""
    async with _auditing(actor, record, AuditAction.SHARE if shared else AuditAction.UNSHARE):
        _owned(actor, record)
        if shared and record.spec.namespace != SYSTEM_NAMESPACE:
            raise Forbidden("only artifacts in the system namespace can be shared")
        if not shared and not record.spec.shared:
            raise Forbidden("artifact not shared")
        updated = await _rewrite(record, lambda current: current.spec.replace(shared=shared))
    await changes.event(actor, KIND, record.uuid, "shared" if shared else "unshared",
                        operation=AuditAction.SHARE if shared else AuditAction.UNSHARE)
    return updated


# --- housekeeping ---------------------------------------------------------------------------


async def tidy(found: Catalogue) -> int:
    """Drop the versions nobody will see again from the records (pruned
    beyond max_versions, failed ones superseded); returns how many records
    changed. Their blobs then go with the next garbage collection."""
    changed = 0
    for record in found.artifacts.values():
        if record.spec.desired == "deleted" or not record.found.dropped:
            continue
        spec = record.spec.replace(versions={i: b for i, b in record.spec.versions.items()
                                             if i not in record.found.dropped})
        rewrite = versions.rewrite_artifact(record, spec)
        result = await store.etcd().txn(rewrite.compares, rewrite.ops)
        changed += result.succeeded
    return changed


async def purge(found: Catalogue, now: float) -> int:
    """Forget artifacts deleted longer ago than they stay readable by UUID."""
    keys = store.keys()
    purged = 0
    for record in found.artifacts.values():
        spec = record.spec
        if spec.desired != "deleted" or spec.deleted_at is None \
                or now - spec.deleted_at < settings.DELETED_RETENTION:
            continue
        result = await store.etcd().txn(
            [Compare.unchanged_since(keys.artifact(spec.uuid), record.revision)],
            [Delete(keys.artifact(spec.uuid))])
        purged += result.succeeded
    return purged


async def _owned_artifacts(namespace: str) -> list[str]:
    """Artifacts the namespace still has (shared ones of others are not its own)."""
    return [r.spec.name for r in await list_records(frozenset({namespace}))
            if r.spec.namespace == namespace]


ownership.register("artifacts", _owned_artifacts)
