"""Blobs: the bytes behind artifact versions. Find them, read their bytes
(served from a node that holds them, a range at a time if asked), and
delete the ones nothing uses any more.

A blob has no owner of its own: the system namespace sees every blob, and
another namespace those its artifacts' versions and its instances use (and
those it made). A blob nobody references (no artifact version, no
instance's disk) is deleted by ``collect_garbage``, as Shaken Fist deletes
a blob whose reference count falls to zero; each node then drops its copy.
"""

from __future__ import annotations

import logging
import re
import time
import uuid as uuidlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from django.conf import settings

from cloudstate import storage
from cloudstate.etcd import Compare, Delete, Put
from cloudstate.model import Blob
from portal.cloud import catalogue, store
from portal.cloud.catalogue import BlobRecord, Catalogue
from portal.cloud.errors import BadRequest, CloudError, NotFound
from portal.cloud.refs import Namespaces
from portal.consoles import agent

log = logging.getLogger(__name__)

SHA512 = re.compile(r"[0-9a-f]{128}")
HASH_ALGORITHMS = ("sha1", "sha256", "sha512", "xxh128")


# --- reading -----------------------------------------------------------------------------


async def get(ref: str, namespaces: Namespaces, found: Catalogue | None = None) -> BlobRecord:
    """A blob the caller may see, by UUID (deleted ones too, until forgotten)."""
    found = found or await catalogue.load()
    try:
        record = found.blobs.get(str(uuidlib.UUID(ref)))
    except ValueError:
        record = None
    if record is None or not found.blob_visible(record, namespaces):
        raise NotFound("blob not found")
    return record


async def list_records(namespaces: Namespaces) -> list[BlobRecord]:
    found = await catalogue.load()
    return sorted((r for r in found.blobs.values()
                   if r.spec.desired != "deleted" and found.blob_visible(r, namespaces)),
                  key=lambda r: (r.spec.created_at, r.uuid))


async def by_checksum(algorithm: str, digest: str, namespaces: Namespaces) -> BlobRecord | None:
    """The oldest created blob the caller may see whose bytes have this
    sha512, else None (Shaken Fist's answer to "is this file here already?")."""
    if algorithm not in HASH_ALGORITHMS:
        raise BadRequest("unknown hash algorithm")
    digest = digest.strip().lower()
    if algorithm != "sha512" or not SHA512.fullmatch(digest):
        return None
    for record in await list_records(namespaces):
        if record.state == storage.CREATED and record.facts.sha512 == digest:
            return record
    return None


# --- bytes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, end] of a blob (end inclusive; None: to its end)."""

    start: int = 0
    end: int | None = None

    def header(self) -> str:
        return f"bytes={self.start}-{'' if self.end is None else self.end}"


@dataclass(frozen=True)
class Data:
    status: int  # 200 (all of it) or 206 (a range)
    length: int | None
    content_range: str | None
    chunks: AsyncIterator[bytes]


async def read(record: BlobRecord, wanted: ByteRange | None = None) -> Data:
    """The blob's bytes (``wanted`` of them), from a live node holding them."""
    if record.state != storage.CREATED:
        raise NotFound(f"blob {record.uuid} is {record.state}: its bytes can't be read")
    path = f"/blobs/{record.uuid}"
    candidates = record.locations or ([record.spec.node] if record.spec.node else [])
    if record.spec.node is None and not candidates:
        candidates = list((await catalogue.load()).hypervisors)
    last: CloudError = NotFound("blob missing")
    for node in sorted(candidates, key=lambda n: n != record.spec.node):
        try:
            status, headers, chunks = await agent.open_stream(
                node, path, {"Range": wanted.header()} if wanted else None)
        except agent.AgentRefused as exc:
            if exc.status == 416:
                raise
            last = exc
            continue
        except agent.AgentUnavailable as exc:
            last = exc
            continue
        length = headers.get("Content-Length")
        return Data(status=status, length=int(length) if length else None,
                    content_range=headers.get("Content-Range"), chunks=chunks)
    raise last


# --- housekeeping ---------------------------------------------------------------------------


async def collect_garbage() -> int:
    """Delete every blob nothing references any more; returns how many.
    A blob still being made is left alone: its maker reports it first."""
    etcd, keys = store.etcd(), store.keys()
    # Fences first: a user added after this read rewrites one, and the
    # deletion below then fails for that blob, as it must.
    fence_kvs, _ = await etcd.get_prefix(keys.blob_fence(""))
    fences = {kv.key: kv.mod_revision for kv in fence_kvs}
    found = await catalogue.load()
    deleted = 0
    for record in found.blobs.values():
        if record.spec.desired == "deleted" or record.references:
            continue
        if record.state in (storage.INITIAL, storage.CREATING):
            continue
        fence = keys.blob_fence(record.uuid)
        spec = record.spec.replace(desired="deleted", deleted_at=time.time())
        result = await etcd.txn(
            [Compare.unchanged_since(keys.blob(record.uuid), record.revision),
             Compare.unchanged_since(fence, fences.get(fence, 0))],
            [Put(keys.blob(record.uuid), spec.to_json())])
        if result.succeeded:
            deleted += 1
            log.info("blob %s is no longer used by anything: deleted", record.uuid)
    return deleted


async def purge(found: Catalogue, now: float) -> int:
    """Forget deleted blobs no node holds any more, once readable long enough."""
    etcd, keys = store.etcd(), store.keys()
    purged = 0
    for record in found.blobs.values():
        blob = record.spec
        if blob.desired != "deleted" or record.copies or blob.deleted_at is None \
                or now - blob.deleted_at < settings.DELETED_RETENTION:
            continue
        result = await etcd.txn([Compare.unchanged_since(keys.blob(blob.uuid), record.revision)],
                                [Delete(keys.blob(blob.uuid)), Delete(keys.blob_fence(blob.uuid))])
        purged += result.succeeded
    return purged


async def _load(uuid: str) -> BlobRecord | None:
    return (await catalogue.load()).blobs.get(uuid)


async def update(record: BlobRecord, change: Callable[[BlobRecord], Blob]) -> BlobRecord:
    """Rewrite the blob's record with ``change`` (see store.rewrite). The
    caller is a service that has checked the Actor's role."""
    return await store.rewrite(record, change, key=store.keys().blob, load=_load, kind="blob")
