"""What a disk starts from: its ``base``, resolved once, at create time,
into a blob (fixed bytes), so agents need no lookups and a label moved
later does not change what an existing instance was built from.

The forms a base may take, Shaken Fist's and sfcloud's:

    (none), "", none          a blank disk
    label:<name>              the newest version of a label of the instance's namespace
    sf://label/<ns>/<name>    ... of namespace <ns>'s label
    sf://snapshot/<uuid>      the newest version of an artifact (any type), by UUID;
    sf://artifact/<uuid>      sf://image/<uuid> is sfcloud's older spelling
    sf://upload/<ns>/<name>   the newest version of what was uploaded as <name>
    sf://blob/<uuid>          that very blob
    sf://instance/<uuid>/<d>  the newest snapshot of that instance's disk <d>
    http(s)://...             the image artifact of that URL (the namespace's own, else a
                              shared one); none yet: one is made, fetched by the node the
                              instance goes to, while the instance waits
    <name> or <uuid>          an artifact the namespace may use (demo, say)

A reference to nothing the caller may use is a 404, as in Shaken Fist.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from cloudstate import storage, validation
from cloudstate.model import Artifact, Blob, DiskSource
from cloudstate.validation import shown
from portal.cloud import artifacts, urlcheck, versions
from portal.cloud.catalogue import ArtifactRecord, BlobRecord, Catalogue, artifact_visible
from portal.cloud.errors import BadRequest, NotFound, NotReady
from portal.cloud.refs import is_uuid
from portal.cloud.versions import Change

_BLANK = ("", "none")


@dataclass(frozen=True)
class Fetch:
    """A URL no artifact of the namespace has yet (or whose fetch failed):
    a new version to fetch, on the node the instance goes to."""

    url: str
    blob_uuid: str
    artifact: ArtifactRecord | None  # the artifact to add it to; None: a new one
    new_artifact_uuid: str


@dataclass(frozen=True)
class Resolved:
    source: DiskSource | None
    blob: BlobRecord | None = None  # a blob that exists already
    fetch: Fetch | None = None


def is_blank(base: str | None) -> bool:
    """Whether a disk starts empty (no image to resolve)."""
    return base is None or base.strip().lower() in _BLANK


async def resolve(base: str | None, namespace: str, found: Catalogue,
                  earlier: list[Resolved] | None = None) -> Resolved:
    """The blob ``base`` names for an instance of ``namespace``. ``earlier``
    are the disks resolved before it, so two disks from one new URL share
    one fetch."""
    if is_blank(base):
        return Resolved(source=None)
    assert base is not None
    base = base.strip()
    visible = frozenset({namespace})
    if base.startswith(("http://", "https://")):
        return await _from_url(base, namespace, found, earlier or [])
    if base.startswith("label:"):
        return _from_artifact(base, _label(found, namespace, base.removeprefix("label:"),
                                           visible))
    if base.startswith("sf://"):
        return _from_sf_url(base, namespace, found, visible)
    if "://" in base:
        validation.image_url(base)  # another scheme: a 400 saying which ones are taken
    try:
        record = await artifacts.get(base, visible, found)
    except NotFound:
        raise NotFound(f"base: there is no artifact {shown(base)}; give an image name (such as "
                       "demo), an artifact UUID, label:<name>, an sf:// reference or an "
                       "http(s) URL") from None
    return _from_artifact(base, record)


def _from_sf_url(base: str, namespace: str, found: Catalogue,
                 visible: frozenset[str]) -> Resolved:
    kind, _, rest = base.removeprefix("sf://").partition("/")
    parts = rest.split("/")
    if kind in ("snapshot", "artifact", "image") and len(parts) == 1 and is_uuid(parts[0]):
        record = found.artifacts.get(parts[0].lower())
        if record is None or not artifact_visible(record.spec, visible):
            raise NotFound(f"base: artifact {parts[0]} not found")
        return _from_artifact(base, record)
    if kind == "label" and len(parts) == 2:
        return _from_artifact(base, _by_url(found, "label", base, parts[0], visible))
    if kind == "upload" and len(parts) == 2:
        return _from_artifact(base, _by_url(found, "image", base, parts[0], visible))
    if kind == "instance" and len(parts) == 2 and is_uuid(parts[0]):
        return _from_artifact(base, _by_url(found, "snapshot", base, None, visible))
    if kind == "blob" and len(parts) == 1:
        blob = found.blobs.get(parts[0].lower()) if is_uuid(parts[0]) else None
        if blob is None or blob.spec.desired == "deleted" \
                or not found.blob_visible(blob, visible):
            raise NotFound(f"base: blob {parts[0]} not found")
        _require_usable(base, blob)
        return Resolved(source=DiskSource(blob_uuid=blob.uuid, url=base), blob=blob)
    raise BadRequest(f"base: {shown(base)} is not a reference this cloud knows: use "
                     "sf://label/<namespace>/<name>, sf://snapshot/<uuid>, sf://artifact/"
                     "<uuid>, sf://upload/<namespace>/<name>, sf://blob/<uuid> or "
                     "sf://instance/<uuid>/<disk>")


def _label(found: Catalogue, namespace: str, name: str,
           visible: frozenset[str]) -> ArtifactRecord:
    return _by_url(found, "label", f"sf://label/{namespace}/{name}", namespace, visible)


def _by_url(found: Catalogue, type: str, url: str, namespace: str | None,
            visible: frozenset[str]) -> ArtifactRecord:
    """The active artifact of this type and source URL that the caller may use."""
    for record in found.artifacts.values():
        spec = record.spec
        if spec.desired != "deleted" and spec.type == type and spec.source_url == url \
                and (namespace is None or spec.namespace == namespace) \
                and artifact_visible(spec, visible):
            return record
    raise NotFound(f"base: {url} not found")


def _from_artifact(base: str, record: ArtifactRecord) -> Resolved:
    """The newest version of an artifact; one being fetched will do too
    (the instance waits for it), but not a snapshot still being taken."""
    if record.spec.desired == "deleted":
        raise NotFound(f"base: artifact {base} not found")
    blob = record.newest
    if blob is None:
        making = record.making
        if making is not None and making.spec.origin == "fetch":
            blob = making
        elif making is not None:
            raise NotReady(f"base: {base} is still being made; try again when it is ready")
        else:
            raise NotFound(f"base: artifact {base} not ready (state={record.state}"
                           + (f": {record.error}" if record.error else "") + ")")
    return Resolved(source=DiskSource(blob_uuid=blob.uuid, url=base,
                                      artifact_uuid=record.uuid), blob=blob)


def _require_usable(base: str, blob: BlobRecord) -> None:
    if blob.state in (storage.INITIAL, storage.CREATING) and blob.spec.origin != "fetch":
        raise NotReady(f"base: {base} is still being made; try again when it is ready")
    if blob.state == storage.ERROR:
        raise NotFound(f"base: blob {blob.uuid} failed: {blob.error}")


async def _from_url(base: str, namespace: str, found: Catalogue,
                    earlier: list[Resolved]) -> Resolved:
    url = validation.image_url(base)
    await urlcheck.check(url, "base")
    record = artifacts.own_or_shared(found, "image", url, namespace)
    if record is not None and record.state != storage.ERROR:
        return _from_artifact(url, record)
    for other in earlier:
        if other.fetch is not None and other.fetch.url == url:
            return other
    fetch = Fetch(url=url, blob_uuid=str(uuidlib.uuid4()),
                  artifact=record if record is not None and record.spec.namespace == namespace
                  else None, new_artifact_uuid=str(uuidlib.uuid4()))
    artifact_uuid = fetch.artifact.uuid if fetch.artifact else fetch.new_artifact_uuid
    return Resolved(source=DiskSource(blob_uuid=fetch.blob_uuid, url=url,
                                      artifact_uuid=artifact_uuid), fetch=fetch)


def holders(resolved: list[Resolved]) -> set[str]:
    """Nodes holding every existing blob the disks start from (none: any)."""
    nodes: set[str] | None = None
    for item in resolved:
        if item.blob is not None and item.blob.spec.node is not None:
            held = set(item.blob.locations) or {item.blob.spec.node}
            nodes = held if nodes is None else nodes & held
    return nodes or set()


def change(resolved: list[Resolved], namespace: str, node: str) -> Change:
    """What the instance's transaction must also do: fence the blobs it
    starts using, and record the fetches it asks of ``node``."""
    result = Change()
    fenced: set[str] = set()
    fetched: set[str] = set()
    for item in resolved:
        if item.blob is not None and item.blob.uuid not in fenced:
            fenced.add(item.blob.uuid)
            result += versions.use_blob(item.blob)
        fetch = item.fetch
        if fetch is None or fetch.blob_uuid in fetched:
            continue
        fetched.add(fetch.blob_uuid)
        result += versions.create_blob(Blob(
            uuid=fetch.blob_uuid, namespace=namespace, origin="fetch", node=node,
            source_url=fetch.url))
        if fetch.artifact is None:
            artifact = Artifact(uuid=fetch.new_artifact_uuid,
                                name=artifacts.default_name(fetch.url), namespace=namespace,
                                source_url=fetch.url).with_version(fetch.blob_uuid)
            result += versions.create_artifact(artifact)
        else:
            result += versions.rewrite_artifact(
                fetch.artifact, fetch.artifact.spec.with_version(fetch.blob_uuid))
    return result
