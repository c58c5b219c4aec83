"""What artifacts and blobs are, derived from their records and from what
the nodes observed: a blob's state and where it is, which of an artifact's
versions are shown, and its state. Nothing here is stored: as with
instances, the portal writes what should be, the agents write what is, and
both are read through these rules, so they cannot disagree.

Shaken Fist's rules, which its client relies on: a blob is ``created`` once
its bytes exist; an artifact is ``initial`` until its first version exists,
then ``created``; it is ``error`` when the fetch of its only version failed.
An artifact keeps at most ``max_versions`` versions, the newest ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cloudstate.model import Artifact, Blob, BlobObserved

# States shown for blobs and artifacts, as Shaken Fist names them.
INITIAL = "initial"
CREATING = "creating"
CREATED = "created"
ERROR = "error"
DELETED = "deleted"

READY = "ready"  # a node's copy, complete

ARTIFACT_TYPES = ("image", "snapshot", "label", "other")
DEFAULT_MAX_VERSIONS = 3

Copies = Mapping[str, BlobObserved]  # node -> its copy of one blob


def blob_state(blob: Blob, copies: Copies) -> str:
    """created once the node that makes the bytes has them all."""
    if blob.desired == "deleted":
        return DELETED
    if blob.node is None:
        # A file every node reads for itself: usable unless every node failed.
        failed = bool(copies) and all(c.state == ERROR for c in copies.values())
        return ERROR if failed else CREATED
    made = copies.get(blob.node)
    if made is None:
        # An upload's bytes were on its node before the record was written.
        return CREATED if blob.origin == "upload" else INITIAL
    if made.state == READY:
        return CREATED
    return ERROR if made.state == ERROR else CREATING


def blob_error(blob: Blob, copies: Copies) -> str | None:
    made = copies.get(blob.node or "")
    if made is not None and made.error:
        return made.error
    return next((c.error for c in copies.values() if c.error), None)


def locations(copies: Copies) -> list[str]:
    """The nodes holding a whole copy."""
    return sorted(node for node, copy in copies.items() if copy.state == READY)


@dataclass(frozen=True)
class BlobFacts:
    """What is known about a blob's bytes: from its record (an upload), else
    from the copy its own node made, else from any whole copy."""

    size: int | None = None
    sha512: str | None = None
    format: str | None = None
    virtual_size: int | None = None
    modified: float | None = None


def blob_facts(blob: Blob, copies: Copies) -> BlobFacts:
    ready = [c for node, c in sorted(copies.items(), key=lambda item: item[0] != blob.node)
             if c.state == READY]
    best = ready[0] if ready else None
    return BlobFacts(
        size=blob.size if blob.size is not None else (best.size if best else None),
        sha512=blob.sha512 or (best.sha512 if best else None),
        format=best.format if best else None,
        virtual_size=best.virtual_size if best else None,
        modified=best.modified if best else None,
    )


@dataclass(frozen=True)
class Version:
    index: int
    blob_uuid: str


@dataclass(frozen=True)
class Versions:
    """An artifact's versions as shown: ``shown`` (created, oldest first, at
    most max_versions), ``pending`` (being made, newer than any shown),
    ``failed`` (the newest version, if making it failed and none is shown:
    the artifact's error), and ``dropped``: version indexes nobody will see
    again (pruned beyond max_versions, failed ones while another is shown,
    as a failed refresh of a cached URL leaves the artifact as it was, and
    versions whose blob is gone)."""

    shown: tuple[Version, ...]
    pending: tuple[Version, ...]
    failed: Version | None
    dropped: tuple[str, ...]

    @property
    def newest(self) -> Version | None:
        return self.shown[-1] if self.shown else None

    @property
    def kept(self) -> tuple[Version, ...]:
        """The versions that hold their blobs (for reference counts)."""
        return self.shown + self.pending + ((self.failed,) if self.failed else ())


def versions(artifact: Artifact, state_of: Callable[[str], str]) -> Versions:
    every = sorted((Version(int(index), blob) for index, blob in artifact.versions.items()),
                   key=lambda v: v.index)
    states = {v.index: state_of(v.blob_uuid) for v in every}
    ready = [v for v in every if states[v.index] == CREATED]
    shown = tuple(ready[-max(1, artifact.max_versions):])
    floor = shown[-1].index if shown else 0
    pending = tuple(v for v in every if v.index > floor and states[v.index] in (INITIAL, CREATING))
    newest = every[-1] if every else None
    failed = newest if newest is not None and not shown \
        and states[newest.index] == ERROR else None
    keep = {v.index for v in shown + pending} | ({failed.index} if failed else set())
    dropped = tuple(str(v.index) for v in every if v.index not in keep)
    return Versions(shown=shown, pending=pending, failed=failed, dropped=dropped)


def artifact_state(artifact: Artifact, found: Versions) -> str:
    if artifact.desired == "deleted":
        return DELETED
    if found.shown:
        return CREATED
    if found.failed is not None and not found.pending:
        return ERROR
    return INITIAL


def wanted_blob(artifact: Artifact, found: Versions) -> str | None:
    """The blob a node holding this artifact ahead of time should have: the
    newest version shown (what instances start from), else the one being
    made (copied once it is)."""
    if artifact.desired == "deleted":
        return None
    if found.newest is not None:
        return found.newest.blob_uuid
    return found.pending[-1].blob_uuid if found.pending else None
