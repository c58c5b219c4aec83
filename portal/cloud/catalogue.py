"""Everything the cloud stores, read at once: artifacts, their blobs, each
node's copies, and which instances start from which blob.

Views of artifacts and blobs need all of it together: an artifact's state
comes from its blobs', a blob's reference count from every artifact version
and instance disk that names it (as Shaken Fist counts them), and who may
see a blob from the artifacts and instances that use it. So the services
read one ``Catalogue`` and derive the rest with ``cloudstate.storage``.
Reference counts are derived, never stored, so they cannot drift.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from cloudstate import storage
from cloudstate.etcd import KeyValue
from cloudstate.model import Artifact, Blob, BlobObserved, InstanceObserved, InstanceSpec
from cloudstate.storage import BlobFacts, Versions
from cloudstate.vocabulary import ObjectKind
from portal.cloud import nodes, scheduler, store
from portal.cloud.refs import Namespaces, visible


@dataclass(frozen=True)
class BlobRecord:
    kind: ClassVar[ObjectKind] = ObjectKind.BLOB
    spec: Blob
    copies: dict[str, BlobObserved] = field(default_factory=dict)
    revision: int = 0
    references: int = 0
    instances: tuple[str, ...] = ()  # instances whose disks start from it

    @property
    def uuid(self) -> str:
        return self.spec.uuid

    @property
    def state(self) -> str:
        return storage.blob_state(self.spec, self.copies)

    @property
    def error(self) -> str | None:
        return storage.blob_error(self.spec, self.copies) if self.state == storage.ERROR \
            else None

    @property
    def facts(self) -> BlobFacts:
        return storage.blob_facts(self.spec, self.copies)

    @property
    def locations(self) -> list[str]:
        return storage.locations(self.copies)

    def progress(self, node: str) -> int | None:
        """Percent done on ``node``, when it is known."""
        copy = self.copies.get(node)
        if copy is None or not copy.total:
            return None
        return min(100, int(copy.done * 100 / copy.total))


@dataclass(frozen=True)
class ArtifactRecord:
    kind: ClassVar[ObjectKind] = ObjectKind.IMAGE
    spec: Artifact
    found: Versions
    blobs: dict[str, BlobRecord] = field(default_factory=dict)  # of its versions
    revision: int = 0
    hypervisors: tuple[str, ...] = ()  # live ones, that a pre-cached artifact should reach
    # Instance uuid -> its namespace, for every instance (the catalogue's, shared).
    instance_namespaces: Mapping[str, str] = field(default_factory=dict, compare=False,
                                                   repr=False)

    @property
    def uuid(self) -> str:
        return self.spec.uuid

    @property
    def state(self) -> str:
        return storage.artifact_state(self.spec, self.found)

    @property
    def error(self) -> str | None:
        failed = self.found.failed
        if self.state != storage.ERROR or failed is None:
            return None
        blob = self.blobs.get(failed.blob_uuid)
        return blob.error if blob else None

    @property
    def newest(self) -> BlobRecord | None:
        """The blob of the newest version shown: what instances start from."""
        newest = self.found.newest
        return self.blobs.get(newest.blob_uuid) if newest else None

    @property
    def making(self) -> BlobRecord | None:
        """The blob being made for the next version, if one is."""
        pending = self.found.pending
        return self.blobs.get(pending[-1].blob_uuid) if pending else None

    @property
    def current(self) -> BlobRecord | None:
        """The blob to show progress and copies of: the one being made, else the newest."""
        return self.making or self.newest

    @property
    def used_by(self) -> tuple[str, ...]:
        """Instances starting from any version shown."""
        found: list[str] = []
        for version in self.found.shown:
            blob = self.blobs.get(version.blob_uuid)
            found.extend(u for u in (blob.instances if blob else ()) if u not in found)
        return tuple(found)

    def used_by_in(self, namespaces: Namespaces) -> tuple[str, ...]:
        """The instances using it that these namespaces hold: a shared image
        tells no namespace about another's instances."""
        return tuple(uuid for uuid in self.used_by
                     if visible(self.instance_namespaces.get(uuid, ""), namespaces))


@dataclass(frozen=True)
class Catalogue:
    artifacts: dict[str, ArtifactRecord]
    blobs: dict[str, BlobRecord]
    hypervisors: tuple[str, ...]
    instance_namespaces: dict[str, str] = field(default_factory=dict)

    def artifacts_visible(self, namespaces: Namespaces, *,
                          include_deleted: bool = False) -> list[ArtifactRecord]:
        return sorted(
            (record for record in self.artifacts.values()
             if artifact_visible(record.spec, namespaces)
             and (include_deleted or record.spec.desired != "deleted")),
            key=lambda r: (r.spec.type, r.spec.name, r.spec.created_at, r.uuid))

    def blob_visible(self, record: BlobRecord, namespaces: Namespaces) -> bool:
        """System sees every blob; others those their artifacts' versions
        and their instances use, and those they made."""
        if namespaces is None or record.spec.namespace in namespaces:
            return True
        return any(
            artifact_visible(a.spec, namespaces) and any(
                v.blob_uuid == record.uuid for v in a.found.kept)
            for a in self.artifacts.values() if a.spec.desired != "deleted"
        ) or any(self.instance_namespaces.get(u) in namespaces for u in record.instances)


def artifact_visible(artifact: Artifact, namespaces: Namespaces) -> bool:
    return artifact.shared or visible(artifact.namespace, namespaces)


async def load() -> Catalogue:
    etcd, keys = store.etcd(), store.keys()
    (artifact_kvs, _), (blob_kvs, _), (copy_kvs, _), (spec_kvs, _), (seen_kvs, _), node_list = \
        await asyncio.gather(
            etcd.get_prefix(keys.artifacts), etcd.get_prefix(keys.blobs),
            etcd.get_prefix(keys.observed_blobs), etcd.get_prefix(keys.instances),
            etcd.get_prefix(keys.observed_instances), nodes.list_nodes())
    copies: dict[str, dict[str, BlobObserved]] = {}
    for kv in copy_kvs:
        if parts := keys.observed_blob_parts(kv.key):
            copies.setdefault(parts[1], {})[parts[0]] = BlobObserved.from_json(kv.value)
    users, disks, namespaces = _instance_users(spec_kvs, seen_kvs)
    blob_specs = {blob.uuid: (blob, kv.mod_revision)
                  for kv in blob_kvs if (blob := Blob.from_json(kv.value))}

    def state_of(uuid: str) -> str:
        found = blob_specs.get(uuid)
        return storage.DELETED if found is None else \
            storage.blob_state(found[0], copies.get(uuid, {}))

    artifacts = [(Artifact.from_json(kv.value), kv.mod_revision) for kv in artifact_kvs]
    versions = {a.uuid: storage.versions(a, state_of) for a, _ in artifacts}
    references: dict[str, int] = {}
    for artifact, _ in artifacts:
        if artifact.desired != "deleted":
            for version in versions[artifact.uuid].kept:
                references[version.blob_uuid] = references.get(version.blob_uuid, 0) + 1
    for blob_uuid, count in disks.items():
        references[blob_uuid] = references.get(blob_uuid, 0) + count
    blobs = {
        uuid: BlobRecord(spec=blob, copies=copies.get(uuid, {}), revision=revision,
                         references=references.get(uuid, 0),
                         instances=tuple(users.get(uuid, ())))
        for uuid, (blob, revision) in blob_specs.items()
    }
    live = tuple(sorted(r.info.name for r in node_list if r.alive and r.info.is_hypervisor))
    records = {
        artifact.uuid: ArtifactRecord(
            spec=artifact, found=versions[artifact.uuid], revision=revision, hypervisors=live,
            blobs={b: blobs[b] for b in artifact.versions.values() if b in blobs},
            instance_namespaces=namespaces)
        for artifact, revision in artifacts
    }
    return Catalogue(artifacts=records, blobs=blobs, hypervisors=live,
                     instance_namespaces=namespaces)


def _instance_users(spec_kvs: Iterable[KeyValue], seen_kvs: Iterable[KeyValue]
                    ) -> tuple[dict[str, list[str]], dict[str, int], dict[str, str]]:
    """(blob uuid -> instances that start from it, blob uuid -> how many
    uses (disks, NVRAM templates) it has, instance -> its namespace),
    counting the instances that still hold their disks."""
    seen = {kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value) for kv in seen_kvs}
    users: dict[str, list[str]] = {}
    disks: dict[str, int] = {}
    namespaces: dict[str, str] = {}
    for kv in spec_kvs:
        spec = InstanceSpec.from_json(kv.value)
        if not scheduler.holds_resources(spec, seen.get(spec.uuid)):
            continue
        namespaces[spec.uuid] = spec.namespace
        for blob in spec.blob_uuids:
            disks[blob] = disks.get(blob, 0) + 1
            if spec.uuid not in users.setdefault(blob, []):
                users[blob].append(spec.uuid)
    return users, disks, namespaces
