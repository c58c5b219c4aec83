"""Shaken Fist's rules for blobs and artifacts, as cloudstate.storage derives
them from the records and the nodes' copies: states, the versions shown,
the ones pruned, and which blob a node holding an artifact wants. And the
byte ranges the blob download answers (portal.downloads)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from cloudstate import storage
from cloudstate.model import Artifact, Blob, BlobObserved
from portal import downloads
from portal.cloud.blobs import ByteRange


def blob(origin: str = "fetch", node: str | None = "n1", **fields: object) -> Blob:
    return Blob(uuid="b", namespace="ns", origin=origin, node=node, **fields)  # type: ignore[arg-type]


def copy(state: str, **fields: object) -> BlobObserved:
    return BlobObserved(state=state, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("made,copies,expected", [
    (blob(), {}, "initial"),
    (blob(), {"n1": copy("downloading")}, "creating"),
    (blob(), {"n1": copy("ready")}, "created"),
    (blob(), {"n1": copy("error", error="404")}, "error"),
    # Another node's copy says nothing about whether the blob exists.
    (blob(), {"n2": copy("ready")}, "initial"),
    # An upload's bytes were on its node before its record was written.
    (blob("upload"), {}, "created"),
    # A file every node reads itself: there unless every node failed.
    (blob("file", None), {}, "created"),
    (blob("file", None), {"n1": copy("error"), "n2": copy("ready")}, "created"),
    (blob("file", None), {"n1": copy("error")}, "error"),
    (blob(desired="deleted"), {"n1": copy("ready")}, "deleted"),
])
def test_a_blobs_state(made: Blob, copies: dict, expected: str) -> None:
    assert storage.blob_state(made, copies) == expected


def test_a_blobs_facts_come_from_its_record_then_its_makers_copy() -> None:
    copies = {"n2": copy("ready", size=9, sha512="other"),
              "n1": copy("ready", size=7, sha512="maker", format="qcow2", virtual_size=99)}
    facts = storage.blob_facts(blob(), copies)
    assert (facts.size, facts.sha512, facts.format, facts.virtual_size) == (7, "maker", "qcow2", 99)
    assert storage.blob_facts(blob("upload", size=5, sha512="known"), copies).sha512 == "known"
    assert storage.locations({"n2": copy("ready"), "n1": copy("downloading")}) == ["n2"]


def artifact(versions: dict[str, str], **fields: object) -> Artifact:
    return Artifact(uuid="a", name="x", namespace="ns", source_url="u", versions=versions,
                    last_index=max((int(i) for i in versions), default=0), **fields)  # type: ignore[arg-type]


def states(**by_blob: str):  # type: ignore[no-untyped-def]
    return lambda uuid: by_blob.get(uuid, "deleted")


def test_new_artifact_is_initial_then_created() -> None:
    pending = artifact({"1": "b1"})
    found = storage.versions(pending, states(b1="creating"))
    assert storage.artifact_state(pending, found) == "initial"
    assert found.newest is None and [v.blob_uuid for v in found.pending] == ["b1"]
    assert storage.wanted_blob(pending, found) == "b1"
    found = storage.versions(pending, states(b1="created"))
    assert storage.artifact_state(pending, found) == "created"
    assert found.newest == storage.Version(1, "b1") and found.dropped == ()


def test_a_failed_first_fetch_is_the_artifacts_error() -> None:
    failed = artifact({"1": "b1"})
    found = storage.versions(failed, states(b1="error"))
    assert storage.artifact_state(failed, found) == "error"
    assert found.failed == storage.Version(1, "b1") and found.kept == (found.failed,)


def test_a_failed_refresh_keeps_the_version_shown_and_is_dropped() -> None:
    refreshed = artifact({"1": "b1", "2": "b2"})
    found = storage.versions(refreshed, states(b1="created", b2="error"))
    assert storage.artifact_state(refreshed, found) == "created"
    assert found.newest == storage.Version(1, "b1") and found.failed is None
    assert found.dropped == ("2",)


def test_only_the_newest_max_versions_are_shown_and_the_rest_dropped() -> None:
    many = artifact({"1": "b1", "2": "b2", "4": "b4", "5": "b5"}, max_versions=2)
    found = storage.versions(many, states(b1="created", b2="created", b4="created",
                                          b5="creating"))
    assert [v.index for v in found.shown] == [2, 4]
    assert [v.index for v in found.pending] == [5]
    assert found.dropped == ("1",)
    # What a node holding it ahead of time wants: what instances start from now.
    assert storage.wanted_blob(many, found) == "b4"
    # Versions whose blob went, and failures superseded, are dropped too.
    found = storage.versions(many, states(b1="error", b2="created", b4="created"))
    assert found.dropped == ("1", "5") and found.failed is None


def test_a_deleted_artifact_wants_nothing() -> None:
    gone = artifact({"1": "b1"}, desired="deleted")
    found = storage.versions(gone, states(b1="created"))
    assert storage.artifact_state(gone, found) == "deleted"
    assert storage.wanted_blob(gone, found) is None


def wanted(query: str = "", header: str | None = None, size: int = 1000):  # type: ignore[no-untyped-def]
    request = RequestFactory().get(f"/api/blobs/x/data{query}",
                                   **({"HTTP_RANGE": header} if header else {}))
    return downloads.wanted_range(request, size)


@pytest.mark.parametrize("query,header,expected", [
    ("", None, (None, False)),
    ("?offset=0&limit=0", None, (None, False)),
    ("?offset=100", None, (ByteRange(100, 999), False)),
    ("?offset=100&limit=50", None, (ByteRange(100, 149), False)),
    ("?offset=900&limit=500", None, (ByteRange(900, 999), False)),
    ("", "bytes=0-9", (ByteRange(0, 9), True)),
    ("", "bytes=990-", (ByteRange(990, 999), True)),
    ("", "bytes=-10", (ByteRange(990, 999), True)),
    ("", "bytes=500-5000", (ByteRange(500, 999), True)),
])
def test_the_bytes_asked_for(query: str, header: str | None, expected: tuple) -> None:
    assert wanted(query, header) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5-2", "bytes=-", "items=0-1",
                                    "bytes=0-1,5-6"])
def test_a_range_outside_the_blob_is_not_satisfiable(header: str) -> None:
    with pytest.raises(downloads.RangeNotSatisfiable):
        wanted(header=header)


def test_a_bad_offset_is_a_400() -> None:
    from portal.cloud.errors import BadRequest

    with pytest.raises(BadRequest, match="offset"):
        wanted("?offset=-5")
