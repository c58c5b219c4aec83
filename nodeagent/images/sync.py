"""This node's image cache, kept in step with the image records in etcd.

It fetches images marked for pre-caching as soon as they appear, fetches
the others when an instance needs them (a snapshot taken on another node is
copied from that node's agent, with a grant signed by the cluster secret and
checked against the sha256 its holder reported), and writes what this node
holds of each image (downloading with progress, ready, failed) to the node's own
observed key, so the portal can show progress per node. Progress writes are
throttled: a download costs etcd one small write every few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from cloudstate import signing, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, AGENT_GRANT_TTL, grant_claims
from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.mirror import Mirror
from cloudstate.model import DiskSource, Image, ImageObserved, InstanceSpec, NodeInfo
from cloudstate.urlguard import FetchPolicy
from nodeagent import records
from nodeagent.events import EventLog
from nodeagent.images.cache import CachedImage, ImageCache
from nodeagent.images.errors import ImageError
from nodeagent.images.fetch import FirstHop

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 2.0


def snapshot_path(uuid: str) -> str:
    """Where a node's agent serves the snapshots it holds."""
    return f"/images/{uuid}"


def cache_key(image: Image) -> str:
    return DiskSource(url=image.source_url, image_uuid=image.uuid).cache_key


class ImageSync:
    def __init__(self, *, node: str, keys: Keys, etcd: Etcd, mirror: Mirror,
                 cache: ImageCache, events: EventLog | None = None,
                 in_use: Callable[[str], bool] | None = None, secret: bytes | None = None,
                 client_tls: tls.ClientTls | None = None):
        self.node = node
        self._secret = secret
        self._client_tls = client_tls
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self.cache = cache
        self._events = events
        # Whether a local instance's disk is backed by this cache key.
        self._in_use = in_use or (lambda _key: False)
        self._last_write: dict[str, float] = {}
        self._writes: dict[str, asyncio.Task[None]] = {}

    # --- reading ----------------------------------------------------------------

    def image(self, uuid: str) -> Image | None:
        kv = self._mirror.get(self._keys.image(uuid))
        return None if kv is None else Image.from_json(kv.value)

    def observed(self, uuid: str) -> ImageObserved | None:
        kv = self._mirror.get(self._keys.observed_image(self.node, uuid))
        return None if kv is None else ImageObserved.from_json(kv.value)

    def images(self) -> list[Image]:
        return [Image.from_json(kv.value) for kv in self._mirror.items(self._keys.images)]

    def wanted_here(self, image: Image) -> bool:
        """Whether this node should hold ``image`` without anyone asking."""
        return image.state != "deleted" and image.kind == "image" and image.precache

    # --- the pass for one image --------------------------------------------------

    async def reconcile(self, uuid: str) -> None:
        image = self.image(uuid)
        observed = self.observed(uuid)
        refused = self._mirror.refused(self._keys.image(uuid))
        if refused is not None:
            # Neither fetched nor forgotten: what it asks can't be trusted.
            # A node that has anything of it, or that it names (a snapshot's
            # holder), says why it stopped there.
            if observed is not None or records.claimed_node(refused.kv.value) == self.node:
                error = f"the node agent refused its record: {refused.reason}"
                if observed is None or observed.state != "error" or observed.error != error:
                    await self._write(uuid, ImageObserved(state="error", error=error))
            return
        if image is None or image.state == "deleted":
            await self._forget(uuid, image, observed)
            return
        if self.wanted_here(image) and (observed is None or observed.state != "error"):
            try:
                await self.ensure(image)
            except ImageError:
                pass  # reported; a new request (a new record) tries again

    async def _forget(self, uuid: str, image: Image | None, observed: ImageObserved | None) -> None:
        key = cache_key(image) if image is not None else f"image-{uuid}"
        if self._in_use(key):
            return  # an instance here still reads it; the sweep comes back later
        if self.cache.lookup(key) is not None:
            self.cache.remove(key)
            if self._events:
                self._events.emit("image", uuid, f"removed from the image cache of {self.node}")
        if observed is not None:
            await self._etcd.delete(self._keys.observed_image(self.node, uuid))

    # --- fetching -------------------------------------------------------------------

    async def ensure_source(self, source: DiskSource) -> CachedImage:
        """The cached image a disk starts from, fetched if need be."""
        if source.image_uuid is None:
            return await self.cache.ensure(source.url, source.cache_key)
        image = self.image(source.image_uuid)
        if image is None:
            # Registered images are resolved into the disk's source at create
            # time, so the instance still builds if its image was deleted since.
            image = Image(uuid=source.image_uuid, name=source.image_uuid, namespace="",
                          source_url=source.url)
        return await self.ensure(image)

    async def ensure(self, image: Image) -> CachedImage:
        key = cache_key(image)
        cached = self.cache.lookup(key)
        if cached is not None:
            await self._report_ready(image, cached)
            return cached
        if image.kind == "snapshot":
            return await self._copy_from_holder(image, key)
        # file:// is only ever followed for images an operator registered
        # (the API takes only http(s) URLs from users), never for a URL a
        # user typed into a disk's base.
        policy = dataclasses.replace(self.cache.policy, allow_file=True) \
            if urlsplit(image.source_url).scheme == "file" else None
        return await self._fetch(image, key, image.source_url, policy=policy)

    async def _copy_from_holder(self, image: Image, key: str) -> CachedImage:
        """A snapshot lives on the node that took it: copy it from there."""
        def refuse(why: str) -> ImageError:
            return ImageError(f"snapshot {image.name} cannot be used on {self.node}: {why}")

        if image.node == self.node or not image.node:
            raise refuse("its copy here is missing")
        node_kv = self._mirror.get(self._keys.node(image.node))
        holder = NodeInfo.from_json(node_kv.value) if node_kv else None
        if (holder is None or not holder.agent_port or self._secret is None
                or self._client_tls is None):
            raise refuse(f"node {image.node}, which holds it, can't be reached")
        observed_kv = self._mirror.get(self._keys.observed_image(image.node, image.uuid))
        held = ImageObserved.from_json(observed_kv.value) if observed_kv else None
        if held is None or held.state != "ready" or not held.sha256:
            raise refuse(f"node {image.node} does not hold it ready")
        path = snapshot_path(image.uuid)
        host = f"[{holder.ip}]" if ":" in holder.ip else holder.ip
        grant = signing.sign(self._secret, AGENT_GRANT_PURPOSE,
                             grant_claims(node=image.node, method="GET", path=path),
                             AGENT_GRANT_TTL)
        # Only that node's address, whatever the cache's policy says about others.
        policy = FetchPolicy(allowed_networks=[ipaddress.ip_network(holder.ip)])
        return await self._fetch(image, key, f"https://{host}:{holder.agent_port}{path}",
                                 policy=policy, expected_sha256=held.sha256,
                                 first_hop=FirstHop(headers={"Authorization": f"Bearer {grant}"},
                                                    ssl=self._client_tls.current()))

    async def _fetch(self, image: Image, key: str, url: str, *,
                     policy: FetchPolicy | None = None, expected_sha256: str | None = None,
                     first_hop: FirstHop | None = None) -> CachedImage:
        started = time.monotonic()
        await self._write(image.uuid, ImageObserved(state="downloading"))
        if self._events:
            self._events.emit("image", image.uuid, f"fetching onto {self.node}",
                              extra={"url": url})
        try:
            cached = await self.cache.ensure(
                url, key, policy=policy, expected_sha256=expected_sha256, first_hop=first_hop,
                on_progress=lambda done, total: self._progress(image.uuid, done, total))
        except ImageError as exc:
            await self._write(image.uuid, ImageObserved(state="error", error=exc.message))
            if self._events:
                self._events.emit("image", image.uuid, f"fetching failed: {exc.message}",
                                  duration=time.monotonic() - started)
            raise
        await self._report_ready(image, cached, duration=time.monotonic() - started)
        return cached

    async def _report_ready(self, image: Image, cached: CachedImage,
                            duration: float | None = None) -> None:
        current = self.observed(image.uuid)
        if current is not None and current.state == "ready" and current.sha256 == cached.sha256:
            return
        await self._write(image.uuid, ImageObserved(
            state="ready", size=cached.size, sha256=cached.sha256, done=cached.size,
            total=cached.size))
        if self._events and duration is not None:
            self._events.emit("image", image.uuid,
                              f"cached on {self.node} ({cached.size} bytes)",
                              duration=duration, extra={"sha256": cached.sha256})

    # --- reporting ------------------------------------------------------------------

    def _progress(self, uuid: str, done: int, total: int | None) -> None:
        """Called by the cache about once a second; writes at most every
        PROGRESS_WRITE_INTERVAL seconds, and never two writes at once."""
        now = time.monotonic()
        if now - self._last_write.get(uuid, 0.0) < PROGRESS_WRITE_INTERVAL:
            return
        running = self._writes.get(uuid)
        if running is not None and not running.done():
            return
        self._last_write[uuid] = now
        self._writes[uuid] = asyncio.get_running_loop().create_task(
            self._write(uuid, ImageObserved(state="downloading", done=done, total=total)))

    async def _write(self, uuid: str, observed: ImageObserved) -> None:
        running = self._writes.pop(uuid, None)
        if running is not None and running is not asyncio.current_task():
            # A final state must not be overtaken by a late progress write.
            await asyncio.gather(running, return_exceptions=True)
        if observed.state != "downloading":
            self._last_write.pop(uuid, None)
        try:
            await self._etcd.put(self._keys.observed_image(self.node, uuid), observed.to_json())
        except Exception:  # noqa: BLE001 - progress is best effort; final states retry via sweep
            log.exception("could not report image %s", uuid)


def specs_using(specs: list[InstanceSpec], key: str) -> list[InstanceSpec]:
    return [spec for spec in specs
            if any(d.source is not None and d.source.cache_key == key for d in spec.disks)]
