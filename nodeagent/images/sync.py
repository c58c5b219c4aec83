"""This node's blobs, kept in step with the blob and artifact records in etcd.

Each blob is made once, by its own node: fetched from its URL, taken as a
snapshot (by the instance's own reconcile pass), or sealed from an upload.
Every other node copies the bytes from a node that holds them, over TLS
with its own certificate and a grant signed by the cluster secret, checked
against the sha512 its holder reported. A node copies a blob when an
instance here starts from it, or ahead of time when its artifact is marked
for pre-caching; it forgets one whose record is deleted (once no local
disk is backed by it).

What this node holds of each blob (downloading with progress, ready,
failed) goes to the node's own observed key, so the portal can show it per
node. Progress writes are throttled: a download costs etcd one small write
every few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable

from cloudstate import signing, storage, tls
from cloudstate.consoles import AGENT_GRANT_PURPOSE, AGENT_GRANT_TTL, grant_claims
from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import Artifact, Blob, BlobObserved, DiskSource, NodeInfo
from cloudstate.urlguard import FetchPolicy
from nodeagent import records
from nodeagent.events import EventLog
from nodeagent.images.blobs import BlobStore, StoredBlob
from nodeagent.images.cache import CachedImage, ImageCache
from nodeagent.images.errors import ImageError
from nodeagent.images.fetch import FirstHop, Unchanged

log = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 2.0
# Bytes with no blob record are kept this long: an upload is sealed into the
# store a moment before the portal writes the blob's record.
UNRECORDED_GRACE = 3600.0


class BlobNotReady(ImageError):
    """The blob is still being made elsewhere: try again when it is."""


def blob_path(uuid: str) -> str:
    """Where a node's agent serves the blobs it holds."""
    return f"/blobs/{uuid}"


class BlobSync:
    def __init__(self, *, node: str, keys: Keys, etcd: Etcd, mirror: MirrorView,
                 blobs: BlobStore, cache: ImageCache, events: EventLog | None = None,
                 in_use: Callable[[str], bool] | None = None, secret: bytes | None = None,
                 client_tls: tls.ClientTls | None = None):
        self.node = node
        self._secret = secret
        self._client_tls = client_tls
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self.blobs = blobs
        self.cache = cache
        self._events = events
        # Whether a local instance's disk is backed by this blob.
        self._in_use = in_use or (lambda _uuid: False)
        self._last_write: dict[str, float] = {}
        self._writes: dict[str, asyncio.Task[None]] = {}

    # --- reading --------------------------------------------------------------------

    def blob(self, uuid: str) -> Blob | None:
        kv = self._mirror.get(self._keys.blob(uuid))
        return None if kv is None else Blob.from_json(kv.value)

    def copies(self, uuid: str) -> dict[str, BlobObserved]:
        found = {}
        for kv in self._mirror.items(self._keys.observed_blobs):
            parts = self._keys.observed_blob_parts(kv.key)
            if parts is not None and parts[1] == uuid:
                found[parts[0]] = BlobObserved.from_json(kv.value)
        return found

    def observed(self, uuid: str) -> BlobObserved | None:
        kv = self._mirror.get(self._keys.observed_blob(self.node, uuid))
        return None if kv is None else BlobObserved.from_json(kv.value)

    def blob_uuids(self) -> set[str]:
        return {uuid for kv in self._mirror.items(self._keys.blobs)
                if (uuid := self._keys.uuid_of(kv.key, self._keys.blobs))}

    def artifacts(self) -> Iterable[Artifact]:
        return (Artifact.from_json(kv.value) for kv in self._mirror.items(self._keys.artifacts))

    def state_of(self, uuid: str) -> str:
        blob = self.blob(uuid)
        return storage.DELETED if blob is None else storage.blob_state(blob, self.copies(uuid))

    def precached(self) -> set[str]:
        """The blobs every hypervisor should hold ahead of time."""
        wanted = set()
        for artifact in self.artifacts():
            if artifact.precache and artifact.desired != "deleted":
                found = storage.versions(artifact, self.state_of)
                if blob := storage.wanted_blob(artifact, found):
                    wanted.add(blob)
        return wanted

    def makes_here(self, blob: Blob) -> bool:
        """Blobs this node makes on its own: fetches assigned to it."""
        return blob.node == self.node and blob.origin == "fetch"

    # --- the pass for one blob --------------------------------------------------------

    async def reconcile(self, uuid: str) -> None:
        refused = self._mirror.refused(self._keys.blob(uuid))
        if refused is not None:
            # Neither fetched nor forgotten: what it asks can't be trusted.
            # A node that has anything of it, or that it names (where it is
            # made), says why it stopped there.
            observed = self.observed(uuid)
            if observed is not None or records.claimed_node(refused.kv.value) == self.node:
                error = f"the node agent refused its record: {refused.reason}"
                if observed is None or observed.state != "error" or observed.error != error:
                    await self._write(uuid, BlobObserved(state="error", error=error))
            return
        blob = self.blob(uuid)
        if blob is None or blob.desired == "deleted":
            await self._forget(uuid, recorded=blob is not None)
            return
        held = self.blobs.lookup(uuid)
        if held is not None:
            await self._report_ready(blob, held)
            return
        observed = self.observed(uuid)
        if observed is not None and observed.state == "error":
            return  # reported; a new request (a new blob) tries again
        if self.makes_here(blob) or uuid in self.precached():
            try:
                await self.ensure(blob)
            except ImageError:
                pass  # reported on our observed key, or not ready yet

    async def _forget(self, uuid: str, *, recorded: bool) -> None:
        if self._in_use(uuid):
            return  # an instance here still reads it; the sweep comes back later
        held = self.blobs.lookup(uuid) is not None
        if not recorded and held and self.blobs.age(uuid) < UNRECORDED_GRACE:
            return  # sealed a moment ago: its record is on its way
        self.cache.remove(uuid)
        if held:
            self.blobs.remove(uuid)
            if self._events:
                self._events.emit("blob", uuid, f"removed from {self.node}")
        if self.observed(uuid) is not None:
            await self._etcd.delete(self._keys.observed_blob(self.node, uuid))

    # --- getting the bytes --------------------------------------------------------------

    async def image(self, source: DiskSource) -> CachedImage:
        """The qcow2 a disk starts from: the blob's bytes here, checked and
        converted. ImageError says what went wrong, for the instance's owner."""
        blob = self.blob(source.blob_uuid)
        base = source.url or source.blob_uuid
        if blob is None or blob.desired == "deleted":
            raise ImageError(f"base {base}: its blob {source.blob_uuid} no longer exists")
        try:
            stored = await self.ensure(blob)
        except BlobNotReady:
            raise
        except ImageError as exc:
            raise ImageError(f"base {base} could not be fetched: {exc.message}") from exc
        try:
            return await self.cache.ensure(stored)
        except ImageError as exc:
            raise ImageError(f"base {base} is not a bootable disk image ({exc.message})") \
                from exc

    async def ensure(self, blob: Blob) -> StoredBlob:
        """The blob's bytes on this node: held, made here, or copied."""
        held = self.blobs.lookup(blob.uuid)
        if held is not None:
            await self._report_ready(blob, held)
            return held
        if blob.origin == "file":
            # A file an operator registered: every node reads its own.
            policy = dataclasses.replace(self.blobs.policy, allow_file=True)
            return await self._fetch(blob, blob.source_url or "", policy=policy)
        if self.makes_here(blob):
            return await self._fetch(blob, blob.source_url or "", unchanged=self._before(blob))
        if blob.node == self.node:
            if blob.origin == "snapshot" and self.state_of(blob.uuid) in (
                    storage.INITIAL, storage.CREATING):
                raise BlobNotReady(f"blob {blob.uuid} is still being made")
            raise ImageError(f"blob {blob.uuid} is missing from {self.node}, which made it")
        return await self._copy(blob)

    def _before(self, blob: Blob) -> tuple[int | None, float | None] | None:
        """The length and Last-Modified of the version a refetch replaces."""
        replaced = self.blob(blob.replaces) if blob.replaces else None
        if replaced is None:
            return None
        facts = storage.blob_facts(replaced, self.copies(replaced.uuid))
        return None if facts.size is None else (facts.size, facts.modified)

    async def _copy(self, blob: Blob) -> StoredBlob:
        """Copy the bytes from a node that holds them (its maker first)."""
        copies = self.copies(blob.uuid)
        holders = [n for n in storage.locations(copies) if n != self.node]
        holders.sort(key=lambda n: n != blob.node)
        if not holders:
            if self.state_of(blob.uuid) in (storage.INITIAL, storage.CREATING):
                raise BlobNotReady(f"blob {blob.uuid} is still being made on {blob.node}")
            raise ImageError(f"no node holds blob {blob.uuid}: "
                             f"{storage.blob_error(blob, copies) or 'its bytes are gone'}")
        holder_name = holders[0]
        node_kv = self._mirror.get(self._keys.node(holder_name))
        holder = NodeInfo.from_json(node_kv.value) if node_kv else None
        if (holder is None or not holder.agent_port or self._secret is None
                or self._client_tls is None):
            raise ImageError(f"node {holder_name}, which holds blob {blob.uuid}, "
                             "can't be reached")
        expected = copies[holder_name].sha512 or blob.sha512
        path = blob_path(blob.uuid)
        host = f"[{holder.ip}]" if ":" in holder.ip else holder.ip
        grant = signing.sign(self._secret, AGENT_GRANT_PURPOSE,
                             grant_claims(node=holder_name, method="GET", path=path),
                             AGENT_GRANT_TTL)
        # Only that node's address, whatever the store's policy says about others.
        policy = FetchPolicy(allowed_networks=[ipaddress.ip_network(holder.ip)])
        # Over TLS: this node's certificate goes with the grant, and the
        # holder's must be the cloud's, for the address dialled.
        return await self._fetch(blob, f"https://{host}:{holder.agent_port}{path}",
                                 policy=policy, expected_sha512=expected,
                                 first_hop=FirstHop(headers={"Authorization": f"Bearer {grant}"},
                                                    ssl=self._client_tls.current()),
                                 shown_url=f"node {holder_name}")

    async def _fetch(self, blob: Blob, url: str, *, policy: FetchPolicy | None = None,
                     expected_sha512: str | None = None, first_hop: FirstHop | None = None,
                     shown_url: str | None = None,
                     unchanged: tuple[int | None, float | None] | None = None) -> StoredBlob:
        started = time.monotonic()
        await self._write(blob.uuid, BlobObserved(state="downloading"))
        if self._events:
            self._events.emit("blob", blob.uuid, f"fetching onto {self.node}",
                              extra={"from": shown_url or url})
        try:
            stored = await self.blobs.fetch(
                blob.uuid, url, policy=policy, expected_sha512=expected_sha512,
                first_hop=first_hop, unchanged=unchanged,
                on_progress=lambda done, total: self._progress(blob.uuid, done, total))
        except Unchanged as exc:
            # No new version: the artifact keeps the one it has.
            await self._write(blob.uuid, BlobObserved(state="error", error=exc.message))
            if self._events:
                self._events.emit("blob", blob.uuid, f"not fetched: {exc.message}",
                                  duration=time.monotonic() - started)
            raise
        except ImageError as exc:
            await self._write(blob.uuid, BlobObserved(state="error", error=exc.message))
            if self._events:
                self._events.emit("blob", blob.uuid, f"fetching failed: {exc.message}",
                                  duration=time.monotonic() - started)
            raise
        await self._report_ready(blob, stored, duration=time.monotonic() - started)
        return stored

    async def adopt(self, blob: Blob, stored: StoredBlob, duration: float | None = None) -> None:
        """Report a blob made here by other means (a snapshot) as ready."""
        await self._report_ready(blob, stored, duration=duration)

    async def _report_ready(self, blob: Blob, stored: StoredBlob,
                            duration: float | None = None) -> None:
        current = self.observed(blob.uuid)
        if current is not None and current.state == "ready" and current.sha512 == stored.sha512:
            return
        await self._write(blob.uuid, BlobObserved(
            state="ready", size=stored.size, sha512=stored.sha512, done=stored.size,
            total=stored.size, format=stored.format, virtual_size=stored.virtual_size,
            modified=stored.modified))
        if self._events:
            self._events.emit("blob", blob.uuid, f"held on {self.node} ({stored.size} bytes)",
                              duration=duration, extra={"sha512": stored.sha512})

    async def report(self, uuid: str, observed: BlobObserved) -> None:
        """Write this node's record of a blob (a snapshot's progress, say)."""
        await self._write(uuid, observed)

    # --- reporting --------------------------------------------------------------------

    def _progress(self, uuid: str, done: int, total: int | None) -> None:
        """Called about once a second while bytes arrive; writes at most every
        PROGRESS_WRITE_INTERVAL seconds, and never two writes at once."""
        now = time.monotonic()
        if now - self._last_write.get(uuid, 0.0) < PROGRESS_WRITE_INTERVAL:
            return
        running = self._writes.get(uuid)
        if running is not None and not running.done():
            return
        self._last_write[uuid] = now
        self._writes[uuid] = asyncio.get_running_loop().create_task(
            self._write(uuid, BlobObserved(state="downloading", done=done, total=total)))

    async def _write(self, uuid: str, observed: BlobObserved) -> None:
        running = self._writes.pop(uuid, None)
        if running is not None and running is not asyncio.current_task():
            # A final state must not be overtaken by a late progress write.
            await asyncio.gather(running, return_exceptions=True)
        if observed.state != "downloading":
            self._last_write.pop(uuid, None)
        try:
            key = self._keys.observed_blob(self.node, uuid)
            revision = await self._etcd.put(key, observed.to_json())
            await self._mirror.wait_for_revision(revision, keys=[key])
        except Exception:  # noqa: BLE001 - progress is best effort; final states retry via sweep
            log.exception("could not report blob %s", uuid)
