"""Images instances can boot from, and how a disk's ``base`` is resolved.

A base may name an image (``demo``), give its UUID (also as
``sf://image/<uuid>``), or be an http(s) URL. The portal resolves it once, at
create time, into the URL the agent fetches, so agents need no lookups and an
image renamed later does not change what an existing instance was built from.
"""

from __future__ import annotations

import uuid as uuidlib

from cloudstate import validation
from cloudstate.model import DiskSource, Image
from portal.cloud import store
from portal.cloud.errors import BadRequest

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
        return DiskSource(url=validation.image_url(base))
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


async def list_images(namespaces: frozenset[str] | None) -> list[Image]:
    """Images a caller may boot from: their namespaces' own, and shared ones."""
    kvs, _ = await store.etcd().get_prefix(store.keys().images)
    found = [Image.from_json(kv.value) for kv in kvs]
    return sorted(
        (image for image in found if image.state != "deleted" and (
            image.shared or namespaces is None or image.namespace in namespaces)),
        key=lambda image: (image.name, image.uuid),
    )
