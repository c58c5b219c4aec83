"""How artifacts gain versions and blobs gain users, as etcd transactions.

Every service that makes an artifact, adds a version or starts using a
blob (caching a URL, an upload, a label, a snapshot, an instance's disk)
builds its transaction from these pieces, so the rules hold whichever door
the change came through:

- a namespace has at most one active artifact of a type per source URL
  (Shaken Fist looks artifacts up by URL): creating one takes its index
  key, which must be free;
- an artifact is rewritten only if nobody else did since it was read;
- whatever starts using a blob rewrites the blob's fence key, and needs the
  blob unchanged since it was read, so the sweep that deletes unused blobs
  (``blobs.collect_garbage``) can't delete one that just gained a user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cloudstate.etcd import Compare, Delete, Put
from cloudstate.model import Artifact, Blob
from portal.cloud import store
from portal.cloud.catalogue import ArtifactRecord, BlobRecord
from portal.cloud.errors import Conflict

Op = Put | Delete


@dataclass
class Change:
    """Comparisons and writes, to make into one transaction."""

    compares: list[Compare] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)

    def __add__(self, other: Change) -> Change:
        return Change(self.compares + other.compares, self.ops + other.ops)

    async def commit(self, what: str) -> int:
        """Run it; a Conflict naming ``what`` if something changed meanwhile."""
        result = await store.etcd().txn(self.compares, self.ops)
        if not result.succeeded:
            raise Conflict(f"{what} changed while this request was handled; try again")
        return result.revision


def create_artifact(artifact: Artifact) -> Change:
    keys = store.keys()
    index = keys.artifact_url(artifact.namespace, artifact.type, artifact.source_url)
    return Change([Compare.absent(keys.artifact(artifact.uuid)), Compare.absent(index)],
                  [Put(keys.artifact(artifact.uuid), artifact.to_json()),
                   Put(index, artifact.uuid)])


def rewrite_artifact(record: ArtifactRecord, artifact: Artifact) -> Change:
    keys = store.keys()
    return Change([Compare.unchanged_since(keys.artifact(record.uuid), record.revision)],
                  [Put(keys.artifact(record.uuid), artifact.to_json())])


async def release_url(artifact: Artifact) -> None:
    """A deleted artifact's URL is free for a new artifact (if the index
    still names this one)."""
    keys = store.keys()
    index = keys.artifact_url(artifact.namespace, artifact.type, artifact.source_url)
    await store.etcd().txn([Compare.value_is(index, artifact.uuid)], [Delete(index)])


def create_blob(blob: Blob) -> Change:
    keys = store.keys()
    return Change([Compare.absent(keys.blob(blob.uuid))],
                  [Put(keys.blob(blob.uuid), blob.to_json()),
                   Put(keys.blob_fence(blob.uuid), b"")])


def use_blob(record: BlobRecord) -> Change:
    keys = store.keys()
    return Change([Compare.unchanged_since(keys.blob(record.uuid), record.revision)],
                  [Put(keys.blob_fence(record.uuid), b"")])
