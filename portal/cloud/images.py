"""Images instances can boot from, and how a disk's ``base`` is resolved.

A base may name an image (``demo``), give its UUID (also as
``sf://image/<uuid>``), or be an http(s) URL. The portal resolves it once, at
create time, into the URL the agent fetches, so agents need no lookups and an
image renamed later does not change what an existing instance was built from.
"""

from __future__ import annotations

import uuid as uuidlib

from cloudstate import validation
from cloudstate.model import Disk, DiskSource, Image, ImageObserved
from portal.cloud import store, urlcheck
from portal.cloud.errors import BadRequest, NotReady

SF_IMAGE_PREFIX = "sf://image/"


async def get_image(uuid: str) -> Image | None:
    kv = await store.etcd().get(store.keys().image(uuid))
    return None if kv is None else Image.from_json(kv.value)


async def find_by_name(name: str, namespace: str) -> Image | None:
    """The namespace's own image of that name, else a shared one."""
    etcd, keys = store.etcd(), store.keys()
    kv = await etcd.get(keys.image_name(namespace, name))
    if kv is not None:
        return await get_image(kv.value.decode())
    kvs, _ = await etcd.get_prefix(keys.images)
    shared = [
        image for image in (Image.from_json(kv.value) for kv in kvs)
        if image.shared and image.name == name and image.state != "deleted"
    ]
    return shared[0] if len(shared) == 1 else None


def _usable(image: Image | None, namespace: str) -> bool:
    return image is not None and image.state != "deleted" and (
        image.shared or image.namespace == namespace or namespace == "system"
    )


async def resolve(base: str | None, namespace: str) -> DiskSource | None:
    if base is None or base.strip().lower() in ("", "none"):
        return None
    base = base.strip()
    if base.startswith(("http://", "https://")):
        url = validation.image_url(base)
        await urlcheck.check(url, "base")
        # Cached ahead of time (POST /artifacts)? Then the nodes have it already.
        cached = await find_by_url(url, namespace)
        return DiskSource(url=url, image_uuid=cached.uuid if cached else None)
    ref = base.removeprefix(SF_IMAGE_PREFIX)
    try:
        image = await get_image(str(uuidlib.UUID(ref)))
    except ValueError:
        image = await find_by_name(ref, namespace)
    if not _usable(image, namespace):
        raise BadRequest(
            f"base: there is no image {base!r}; give an image name (such as demo), "
            "an image UUID, or an http(s) URL"
        )
    assert image is not None
    return DiskSource(url=image.source_url, image_uuid=image.uuid)


async def find_by_url(url: str, namespace: str) -> Image | None:
    """An image fetched from exactly this URL that the namespace may use."""
    for image in await list_images(frozenset({namespace})):
        if image.kind == "image" and image.source_url == url and image.precache:
            return image
    return None


async def nodes_holding(disks: list[Disk]) -> set[str]:
    """The nodes that hold what these disks start from (snapshots), once
    each snapshot is ready: 406 (retry) while one is still being taken."""
    nodes = set()
    for disk in disks:
        if disk.source is None or not disk.source.image_uuid:
            continue
        image = await get_image(disk.source.image_uuid)
        if image is None or image.kind != "snapshot" or not image.node:
            continue
        kv = await store.etcd().get(store.keys().observed_image(image.node, image.uuid))
        observed = ImageObserved.from_json(kv.value) if kv else None
        if observed is None or observed.state in ("creating", "downloading"):
            raise NotReady(f"base: snapshot {image.name} is still being taken; try again "
                           "when it is ready")
        if observed.state != "ready":
            raise BadRequest(f"base: snapshot {image.name} failed and cannot be used: "
                             f"{observed.error or observed.state}")
        nodes.add(image.node)
    return nodes


async def list_images(namespaces: frozenset[str] | None) -> list[Image]:
    """Images a caller may boot from: their namespaces' own, and shared ones."""
    kvs, _ = await store.etcd().get_prefix(store.keys().images)
    found = [Image.from_json(kv.value) for kv in kvs]
    return sorted(
        (image for image in found if image.state != "deleted" and (
            image.shared or namespaces is None or image.namespace in namespaces)),
        key=lambda image: (image.name, image.uuid),
    )
