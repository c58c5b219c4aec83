"""Shaken Fist's semantics for artifacts and blobs (sfcloud issue 19, items 3
to 8), each driven through Shaken Fist's own Python client
(``shakenfist_client.apiclient``) as a Shaken Fist user's script would, and
checked against Shaken Fist's answer: status, fields and states."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from shakenfist_client import apiclient

from tests.support.cloud import Cloud, wait_for
from tests.support.httpserve import HTTPTestServer

pytestmark = pytest.mark.integration

TEXT = b"this is a text file, not a disk!!!\n"  # 35 bytes
ONE_DISK = [{"size": 1, "base": None, "bus": None, "type": "disk"}]


@pytest.fixture(scope="module")
def files(guest_image_dir: Path) -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as served:
        served.serve_bytes("/notes.txt", TEXT, "text/plain")
        served.serve_bytes("/disk.qcow2", (guest_image_dir / "disk.qcow2").read_bytes(),
                           "application/x-qcow2")
        yield served


def disk(base: str) -> list[dict]:
    return [{"size": 1, "base": base, "bus": None, "type": "disk"}]


def settled(library: apiclient.Client, uuid: str) -> dict:
    """The artifact once its fetch has ended, one way or the other."""
    return wait_for(lambda: (a := library.get_artifact(uuid))["state"] != "initial" and a,
                    60, f"artifact {uuid} to be fetched")


def test_3_any_file_is_an_artifact_and_booting_from_it_fails_clearly(
        cloud: Cloud, files: HTTPTestServer) -> None:
    library = cloud.sf_library()
    cached = library.cache_artifact(files.url("/notes.txt"))
    assert cached["artifact_type"] == "image" and cached["state"] in ("initial", "created")
    shown = settled(library, cached["uuid"])
    assert shown["state"] == "created"
    assert [(v["size"]) for v in shown["blobs"].values()] == [len(TEXT)]
    blob = library.get_blob(shown["blob_uuid"])
    assert blob["size"] == len(TEXT) and blob["file format"] == "raw"

    instance = library.create_instance("fromtext", 1, 128, [], disk(files.url("/notes.txt")),
                                       None, None)
    assert instance["state"] == "error", instance
    assert "is not a bootable disk image" in instance["error_message"]
    library.delete_instance(instance["uuid"])
    library.delete_artifact(cached["uuid"])


def test_4_a_fetch_failure_is_the_artifacts_state(cloud: Cloud, files: HTTPTestServer) -> None:
    library = cloud.sf_library()
    missing = files.url("/missing.qcow2")
    cached = library.cache_artifact(missing)  # 200, as in Shaken Fist
    shown = settled(library, cached["uuid"])
    assert shown["state"] == "error" and "404" in shown["error_message"]
    assert shown["index"] == 0 and "blob_uuid" not in shown and shown["blobs"] == {}
    # Still listed, as Shaken Fist lists artifacts in error.
    assert cached["uuid"] in [a["uuid"] for a in library.get_artifacts()]
    # What must never be fetched is still refused at once.
    with pytest.raises(apiclient.RequestMalformedException, match="metadata service"):
        library.cache_artifact("http://169.254.169.254/latest/meta-data")
    library.delete_artifact(cached["uuid"])


def test_caching_a_url_again_adds_a_version_only_if_the_file_changed(
        cloud: Cloud, files: HTTPTestServer) -> None:
    library = cloud.sf_library()
    path = "/changing.bin"
    files.serve_bytes(path, b"first" * 100, headers={"Last-Modified": "Mon, 01 Jan 2024 "
                                                                       "00:00:00 GMT"})
    url = files.url(path)
    first = settled(library, library.cache_artifact(url)["uuid"])
    assert list(first["blobs"]) == [1] and first["blobs"][1]["size"] == 500

    def looked(times: int) -> bool:
        return files.count(path) == times and not cloud.api().get(
            f"/artifacts/{first['uuid']}").json()["nodes"] == {}

    assert library.cache_artifact(url)["uuid"] == first["uuid"]
    wait_for(lambda: looked(2), 60, "the second look")
    unchanged = library.get_artifact(first["uuid"])
    assert list(unchanged["blobs"]) == [1] and unchanged["blob_uuid"] == first["blob_uuid"]

    files.serve_bytes(path, b"second!" * 100, headers={"Last-Modified": "Tue, 02 Jan 2024 "
                                                                          "00:00:00 GMT"})
    library.cache_artifact(url)
    changed = wait_for(lambda: (a := library.get_artifact(first["uuid"]))["blob_uuid"]
                       != first["blob_uuid"] and a, 60, "the new version")
    assert len(changed["blobs"]) == 2 and changed["blobs"][changed["index"]]["size"] == 700
    assert [v["size"] for v in library.get_artifact_versions(first["uuid"])] == [500, 700]
    library.delete_artifact(first["uuid"])


def test_5_reference_counts_as_shaken_fist_counts_them(cloud: Cloud,
                                                       files: HTTPTestServer) -> None:
    library = cloud.sf_library()
    url = files.url("/disk.qcow2") + "?refcounts"
    shown = settled(library, library.cache_artifact(url)["uuid"])
    blob_uuid = shown["blob_uuid"]
    # Right after a cache: 1, its version.
    assert shown["blobs"][shown["index"]]["reference_count"] == 1
    assert library.get_blob(blob_uuid)["reference_count"] == 1
    # A label on the same blob: 2.
    library.update_label("refcounted", blob_uuid)
    assert library.get_blob(blob_uuid)["reference_count"] == 2
    # An instance whose disk starts from it: 3, and the blob names it.
    instance = library.create_instance("refcount", 1, 128, [], disk(url), None, None)
    assert instance["state"] == "created", instance
    found = library.get_blob(blob_uuid)
    assert found["reference_count"] == 3 and found["instances"] == [instance["uuid"]]
    library.delete_instance(instance["uuid"])
    wait_for(lambda: library.get_blob(blob_uuid)["reference_count"] == 2, 30,
             "the instance's reference to go")
    library._request_url("DELETE", "/label/refcounted")
    library.delete_artifact(shown["uuid"])
    wait_for(lambda: library.get_blob(blob_uuid)["state"] == "deleted", 30, "the blob to go")


def test_6_shared_artifacts(cloud: Cloud, files: HTTPTestServer) -> None:
    user = cloud.make_namespace("sem-shared")
    mine = cloud.sf_library(user.namespace, user.key)
    system = cloud.sf_library()
    url = files.url("/disk.qcow2") + "?shared"
    with pytest.raises(apiclient.UnauthorizedException,
                       match="only the system namespace can create shared artifacts"):
        mine.cache_artifact(url, shared=True)
    assert url not in [a["source_url"] for a in mine.get_artifacts()]

    private = mine.cache_artifact(url)
    assert private["namespace"] == user.namespace and private["shared"] is False
    shared = system.cache_artifact(url, shared=True)
    # The system namespace's shared artifact is its own, apart from the private one.
    assert shared["uuid"] != private["uuid"]
    assert shared["namespace"] == "system" and shared["shared"] is True
    assert mine.get_artifact(private["uuid"])["shared"] is False
    listed = {a["uuid"] for a in mine.get_artifacts()}
    assert {private["uuid"], shared["uuid"]} <= listed
    # Every namespace sees it; their own comes first when they cache the URL.
    third = cloud.make_namespace("sem-shared-other")
    theirs = cloud.sf_library(third.namespace, third.key)
    assert shared["uuid"] in {a["uuid"] for a in theirs.get_artifacts()}
    assert theirs.get_artifact(shared["uuid"])["uuid"] == shared["uuid"]
    assert theirs.cache_artifact(url)["uuid"] == shared["uuid"]
    assert mine.cache_artifact(url)["uuid"] == private["uuid"]
    # Only its own namespace may delete it.
    with pytest.raises(apiclient.UnauthorizedException, match="belongs to namespace system"):
        theirs.delete_artifact(shared["uuid"])
    with pytest.raises(apiclient.UnauthorizedException, match="artifact not shared"):
        mine.unshare_artifact(private["uuid"])
    system.unshare_artifact(shared["uuid"])
    assert shared["uuid"] not in {a["uuid"] for a in theirs.get_artifacts()}
    system.delete_artifact(shared["uuid"])
    mine.delete_artifact(private["uuid"])


def test_7_missing_references_are_404_and_make_nothing(cloud: Cloud) -> None:
    library = cloud.sf_library()
    before = cloud.etcd_keys("instances/")
    nobody = str(uuidlib.uuid4())
    for base in ("label:doesnotexist", "sf://label/system/nolabel", f"sf://blob/{nobody}",
                 f"sf://snapshot/{nobody}", f"sf://artifact/{nobody}",
                 "sf://upload/system/nothing-uploaded", f"sf://instance/{nobody}/vda",
                 "no-such-image"):
        with pytest.raises(apiclient.ResourceNotFoundException):
            library.create_instance("missing", 1, 128, [], disk(base), None, None)
    with pytest.raises(apiclient.ResourceNotFoundException, match="blob not found"):
        library.update_label("nothing", nobody)
    with pytest.raises(apiclient.ResourceNotFoundException):
        library.get_blob(nobody)
    with pytest.raises(apiclient.ResourceNotFoundException):
        library.get_artifact(nobody)
    with pytest.raises(apiclient.ResourceNotFoundException, match="upload not found"):
        library.send_upload(nobody, b"bytes")
    assert cloud.etcd_keys("instances/") == before


def test_8_sf_references_as_disk_bases(cloud: Cloud, tmp_path: Path) -> None:
    library = cloud.sf_library()
    source = library.create_instance("sfrefsrc", 1, 128, [], disk("demo"), None, None)
    cloud.wait_console(source["uuid"], "SFCLOUD-READY")
    taken = library.snapshot_instance(source["uuid"], label_name="sfref")
    artifact_uuid, blob_uuid = taken["vda"]["artifact_uuid"], taken["vda"]["blob_uuid"]
    upload_file = tmp_path / "disk.qcow2"
    upload_file.write_bytes(b"\0" * 4096)
    upload = library.create_upload()
    library.send_upload(upload["uuid"], upload_file.read_bytes())
    uploaded = library.upload_artifact("sfref-upload", upload["uuid"])

    # Booted: sf://snapshot/<artifact uuid>.
    booted = library.create_instance("fromsnap", 1, 128, [],
                                     disk(f"sf://snapshot/{artifact_uuid}"), None, None)
    assert booted["state"] == "created", booted
    assert booted["disks"][0]["blob_uuid"] == blob_uuid
    cloud.wait_console(booted["uuid"], "SFCLOUD-READY")
    # The other forms name the blob they should (and are deleted at once).
    for base, expected in ((f"sf://blob/{blob_uuid}", blob_uuid),
                           (f"sf://artifact/{artifact_uuid}", blob_uuid),
                           ("sf://label/system/sfref", blob_uuid),
                           ("label:sfref", blob_uuid),
                           (f"sf://instance/{source['uuid']}/vda", blob_uuid),
                           ("sf://upload/system/sfref-upload", uploaded["blob_uuid"])):
        response = cloud.api().post("/instances", {
            "name": "sfrefcheck", "cpus": 1, "memory": 128,
            "disk": [{"size": 1, "base": base}]})
        assert response.status_code == 200, (base, response.text)
        assert response.json()["disks"][0]["blob_uuid"] == expected, base
        cloud.api().delete(f"/instances/{response.json()['uuid']}")
    refused = cloud.api().post("/instances", {"name": "badref", "cpus": 1, "memory": 128,
                                              "disk": [{"size": 1, "base": "sf://other/x"}]})
    assert refused.status_code == 400 and "sf://" in refused.json()["error"]
    for uuid in (booted["uuid"], source["uuid"]):
        library.delete_instance(uuid)
    library._request_url("DELETE", "/label/sfref")
    library.delete_artifact(artifact_uuid)
    library.delete_artifact(uploaded["uuid"])
