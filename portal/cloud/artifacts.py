"""Images as things people manage: cache one by URL ahead of time, see what
each node holds of it (with live progress), delete it once nothing uses it.

An image's record says what it is; each node writes what it holds of it
(cloudstate.model.ImageObserved). The state shown combines them: a
pre-cached image is ``created`` once every live hypervisor has it, a
snapshot once the node that took it has it.
"""

from __future__ import annotations

import posixpath
import re
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from cloudstate import validation
from cloudstate.etcd import Compare, Delete, Put
from cloudstate.model import Image, ImageObserved, InstanceObserved, InstanceSpec
from cloudstate.vocabulary import ObjectKind
from portal.accounts import audit
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import changes, nodes, ownership, scheduler, store, urlcheck
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

Namespaces = frozenset[str] | None

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
KIND = ObjectKind.IMAGE


@dataclass(frozen=True)
class ImageRecord:
    image: Image
    by_node: dict[str, ImageObserved] = field(default_factory=dict)
    hypervisors: tuple[str, ...] = ()  # live ones, that a pre-cached image should reach
    used_by: tuple[str, ...] = ()  # uuids of instances whose disks start from it

    @property
    def uuid(self) -> str:
        return self.image.uuid

    @property
    def state(self) -> str:
        image = self.image
        if image.state == "deleted":
            return "deleted"
        states = [o.state for o in self.by_node.values()]
        if image.kind == "snapshot":
            mine = self.by_node.get(image.node or "")
            if mine is None:
                return "initial"
            return {"ready": "created", "error": "error"}.get(mine.state, "creating")
        if "error" in states:
            return "error"
        if image.precache:
            if any(self.by_node.get(n) is None or self.by_node[n].state != "ready"
                   for n in self.hypervisors):
                return "creating" if states else "initial"
        return "created"

    @property
    def error(self) -> str | None:
        return next((o.error for o in self.by_node.values() if o.error), None)

    @property
    def size(self) -> int | None:
        return next((o.size for o in self.by_node.values() if o.state == "ready"), None)

    def progress(self, node: str) -> int | None:
        """Percent done on ``node``, when it is known."""
        observed = self.by_node.get(node)
        if observed is None or not observed.total:
            return None
        return min(100, int(observed.done * 100 / observed.total))


def default_name(url: str) -> str:
    """What the URL's last path element calls the image, made name-safe."""
    last = posixpath.basename(unquote(urlsplit(url).path)) or urlsplit(url).hostname or "image"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", last).strip("-.") or "image"
    return name[:63]


def validate_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise validation.ValidationError(
            "name", f"{value!r} is not a valid image name: use 1-63 letters, digits, dots, "
                    "hyphens and underscores, starting with a letter or digit")
    return value


# --- reading -------------------------------------------------------------------------


async def _everything() -> tuple[list[Image], dict[str, dict[str, ImageObserved]],
                                 tuple[str, ...], dict[str, list[str]]]:
    etcd, keys = store.etcd(), store.keys()
    image_kvs, _ = await etcd.get_prefix(keys.images)
    observed_kvs, _ = await etcd.get_prefix(keys.observed_images)
    spec_kvs, _ = await etcd.get_prefix(keys.instances)
    instance_observed, _ = await etcd.get_prefix(keys.observed_instances)
    by_image: dict[str, dict[str, ImageObserved]] = {}
    for kv in observed_kvs:
        node, uuid = kv.key[len(keys.observed_images):].split("/", 1)
        by_image.setdefault(uuid, {})[node] = ImageObserved.from_json(kv.value)
    live = tuple(sorted(r.info.name for r in await nodes.list_nodes()
                        if r.alive and r.info.is_hypervisor))
    seen = {kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value)
            for kv in instance_observed}
    users: dict[str, list[str]] = {}
    for kv in spec_kvs:
        spec = InstanceSpec.from_json(kv.value)
        if not scheduler.holds_resources(spec, seen.get(spec.uuid)):
            continue
        for disk in spec.disks:
            if disk.source is not None and disk.source.image_uuid:
                users.setdefault(disk.source.image_uuid, []).append(spec.uuid)
    images = [Image.from_json(kv.value) for kv in image_kvs]
    return images, by_image, live, users


def visible(image: Image, namespaces: Namespaces) -> bool:
    return namespaces is None or image.shared or image.namespace in namespaces


async def list_records(namespaces: Namespaces, *, kind: str | None = None,
                       instance_uuid: str | None = None) -> list[ImageRecord]:
    images, by_image, live, users = await _everything()
    records = [
        ImageRecord(image=image, by_node=by_image.get(image.uuid, {}), hypervisors=live,
                    used_by=tuple(users.get(image.uuid, ())))
        for image in images
        if image.state != "deleted" and visible(image, namespaces)
        and (kind is None or image.kind == kind)
        and (instance_uuid is None or image.instance_uuid == instance_uuid)
    ]
    return sorted(records, key=lambda r: (r.image.kind, r.image.name, r.image.uuid))


async def get(ref: str, namespaces: Namespaces) -> ImageRecord:
    """By UUID or by name (the caller's own first, then shared ones)."""
    records = await list_records(namespaces)
    try:
        uuid = str(uuidlib.UUID(ref))
    except ValueError:
        matches = [r for r in records if r.image.name == ref]
        own = [r for r in matches if namespaces is not None and r.image.namespace in namespaces]
        matches = own or matches
        if len(matches) > 1:
            raise BadRequest(f"{len(matches)} images are named {ref!r}: use the UUID") from None
    else:
        matches = [r for r in records if r.uuid == uuid]
    if not matches:
        raise NotFound(f"image {ref} not found")
    return matches[0]


# --- writing -------------------------------------------------------------------------


async def cache(actor: Actor, url: object, namespace: str, *, shared: bool = False,
                name: object = None) -> ImageRecord:
    """Fetch an image onto every hypervisor ahead of time. Asking again for
    the same URL in the same namespace returns the image already there."""
    async with changes.changing(actor, AuditAction.CACHE, KIND, namespace=namespace,
                                object_name=str(url or "")[:255],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        record, fresh = await _cache(url, namespace, shared=shared, name=name)
        entry.object_id, entry.object_name = record.uuid, record.image.name
    if fresh:
        await changes.event(actor, KIND, record.uuid, "caching requested",
                            url=record.image.source_url)
    return record


async def _cache(url: object, namespace: str, *, shared: bool,
                 name: object) -> tuple[ImageRecord, bool]:
    """(the image, whether it is new)."""
    url = validation.image_url(url, "url")
    await urlcheck.probe(url, "url")
    if shared and namespace != "system":
        raise validation.ValidationError("shared", "only the system namespace may share images")
    for record in await list_records(frozenset({namespace})):
        image = record.image
        if image.namespace == namespace and image.kind == "image" \
                and image.source_url == url and image.precache:
            return record, False
    wanted = validate_name(name) if name else default_name(url)
    etcd, keys = store.etcd(), store.keys()
    for attempt in range(20):
        candidate = wanted if attempt == 0 else f"{wanted[:56]}-{attempt + 1}"
        image = Image(uuid=str(uuidlib.uuid4()), name=candidate, namespace=namespace,
                      source_url=url, shared=shared, precache=True, created_at=time.time())
        name_key = keys.image_name(namespace, candidate)
        result = await etcd.txn(
            [Compare.absent(name_key)],
            [Put(keys.image(image.uuid), image.to_json()), Put(name_key, image.uuid)])
        if result.succeeded:
            return ImageRecord(image=image), True
        if name:
            raise Conflict(f"an image named {candidate!r} already exists in namespace "
                           f"{namespace!r}")
    raise Conflict(f"too many images are named like {wanted!r}; give a name")


async def delete(actor: Actor, record: ImageRecord) -> Image:
    """Forget an image; each node then drops its copy. Refused while an
    instance's disk still starts from it (its disk file is an overlay on it),
    and to anyone but its own namespace (a shared image is seen by all)."""
    namespace = record.image.namespace
    async with audit.recording(actor, namespace, AuditAction.DELETE, KIND,
                               object_id=record.uuid, object_name=record.image.name):
        if not actor.can_read(namespace):
            raise Forbidden(f"image {record.image.name} belongs to namespace "
                            f"{namespace}, which alone may delete it")
        actor.require_operate(namespace, f"image {record.uuid}")
        image = await _mark_deleted(record)
    await changes.event(actor, KIND, image.uuid, "deletion requested")
    return image


async def _mark_deleted(record: ImageRecord) -> Image:
    if record.used_by:
        shown = ", ".join(record.used_by[:5]) + (" ..." if len(record.used_by) > 5 else "")
        raise Conflict(f"image {record.image.name} is in use by {len(record.used_by)} "
                       f"instance(s) ({shown}); delete them first")
    image = record.image.replace(state="deleted", deleted_at=time.time())
    etcd, keys = store.etcd(), store.keys()
    name_key = keys.image_name(image.namespace, image.name)
    name_kv = await etcd.get(name_key)
    await etcd.txn([], [Put(keys.image(image.uuid), image.to_json()),
                        *([Delete(name_key)] if name_kv and name_kv.value.decode() == image.uuid
                          else [])])
    return image


async def _owned_images(namespace: str) -> list[str]:
    """Images (cached or snapshots) the namespace still has; shared ones of
    other namespaces are not its own."""
    return [r.image.name for r in await list_records(frozenset({namespace}))
            if r.image.namespace == namespace]


ownership.register("images", _owned_images)
