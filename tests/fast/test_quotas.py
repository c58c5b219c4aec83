"""Quotas per namespace through the API: defaults for new namespaces and none
for system, only system admins set them, the namespace's people read theirs
(and nobody else's), each kind refused with its limit and use when a create
would pass it (leaving nothing made), given back on delete (also when the
agent finishes one), and creates racing for the last unit: exactly one wins.
"""

from __future__ import annotations

import io
import secrets
from collections import Counter
from typing import Any

import pytest

from cloudstate import quotas
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import Api, InProcessPortal, Person, Reply
from tests.support.racing import raced_transactions

SPARE_URL = "http://127.0.0.1:9/quota-{}.qcow2"  # never fetched: nothing runs the fetch


def make_namespace(portal: InProcessPortal, **limits: Any) -> str:
    """A new namespace (with its default quotas), then ``limits`` set on it."""
    name = f"q-{secrets.token_hex(3)}"
    assert portal.api().post("/auth/namespaces", {"namespace": name}).status_code == 200
    if limits:
        response = portal.api().put(f"/auth/namespaces/{name}/quota", limits)
        assert response.status_code == 200, response.text
    return name


def member_api(portal: InProcessPortal, namespace: str) -> Api:
    person = portal.person(f"m-{secrets.token_hex(3)}", {namespace: "member"})
    return person.api(namespace)


def quota_of(api: Api, namespace: str) -> dict[str, dict[str, Any]]:
    response = api.get(f"/auth/namespaces/{namespace}/quota")
    assert response.status_code == 200, response.text
    return response.json()["quota"]


def instance(name: str, cpus: int = 1, memory: int = 128, disk: int = 1,
             **extra: Any) -> dict[str, Any]:
    return {"name": name, "cpus": cpus, "memory": memory, "disk": [{"size": disk}], **extra}


def refused(response: Reply, message: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["error"] == message


# --- defaults, who sets and who reads ----------------------------------------------------------


def test_new_namespaces_get_the_defaults_and_system_none(portal: InProcessPortal,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFCLOUD_DEFAULT_QUOTAS", "vcpus=7,image_bytes=3G,networks=none")
    namespace = make_namespace(portal)
    shown = quota_of(portal.api(), namespace)
    assert list(shown) == list(quotas.KINDS)
    expected = {name: kind.default for name, kind in quotas.KINDS.items()}
    expected.update(vcpus=7, image_bytes=3 << 30, networks=None)
    assert {name: line["limit"] for name, line in shown.items()} == expected
    assert all(line["in_use"] == 0 for line in shown.values())
    assert shown["memory_mib"]["unit"] == "MiB" and shown["image_bytes"]["unit"] == "bytes"
    system = quota_of(portal.api(), "system")
    assert all(line["limit"] is None for line in system.values())


def test_only_system_admins_set_quotas(portal: InProcessPortal, alice: Person,
                                       bob: Person) -> None:
    namespace_admin = portal.person("nsadmin", {"team": "admin"})
    path = "/auth/namespaces/team/quota"
    for who, status in ((alice, 403), (namespace_admin, 403), (bob, 404)):
        response = who.api("team" if who is not bob else "other").put(path, {"vcpus": 1})
        assert response.status_code == status, (who.username, response.text)
    assert quota_of(portal.api(), "team")["vcpus"]["limit"] is None
    response = portal.api().put(path, {"vcpus": 4, "image_bytes": "2G", "networks": None})
    assert response.status_code == 200, response.text
    shown = response.json()["quota"]
    assert (shown["vcpus"]["limit"], shown["image_bytes"]["limit"]) == (4, 2 << 30)
    # Kinds not named stay as they were.
    again = portal.api().put(path, {"instances": 3}).json()["quota"]
    assert (again["vcpus"]["limit"], again["instances"]["limit"]) == (4, 3)


@pytest.mark.parametrize("body,message", [
    ({"cores": 4}, "cores: not a kind of quota; the kinds are instances, vcpus"),
    ({"vcpus": -1}, "vcpus: '-1' is not a limit: give a whole number"),
    ({"vcpus": "lots"}, "vcpus: 'lots' is not a limit"),
    ({"vcpus": 1.5}, "vcpus: '1.5' is not a limit"),
    ({"vcpus": True}, "vcpus: 'True' is not a limit"),
    ({"image_bytes": "5 parsecs"}, "image_bytes: '5 parsecs' is not a limit: give a whole "
                                   "number of bytes, or a size such as 20G"),
    ({"memory_mib": 2 ** 70}, "memory_mib: "),
])
def test_bad_limits_are_refused_and_change_nothing(portal: InProcessPortal, body: dict,
                                                   message: str) -> None:
    namespace = make_namespace(portal, vcpus=5)
    before = quota_of(portal.api(), namespace)
    response = portal.api().put(f"/auth/namespaces/{namespace}/quota", {"instances": 1, **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message), response.json()["error"]
    assert quota_of(portal.api(), namespace) == before


def test_people_read_their_own_namespace_quota_only(portal: InProcessPortal, alice: Person,
                                                    viewer: Person, bob: Person) -> None:
    assert alice.api("team").get("/auth/namespaces/team/quota").status_code == 200
    assert viewer.api("team").get("/auth/namespaces/team/quota").status_code == 200
    stranger = bob.api("other").get("/auth/namespaces/team/quota")
    assert stranger.status_code == 404
    assert stranger.json()["error"] == "namespace team not found"
    assert portal.api().get("/auth/namespaces/nowhere/quota").status_code == 404


# --- each kind, hit ------------------------------------------------------------------------------


def test_instance_kinds_are_refused_with_limit_and_use(portal: InProcessPortal,
                                                       agent: FakeAgent) -> None:
    namespace = make_namespace(portal, instances=2, vcpus=3, memory_mib=1024, disk_gb=10)
    api = member_api(portal, namespace)
    assert api.post("/instances", instance("one", cpus=2, memory=512, disk=6)).status_code == 200
    refused(api.post("/instances", instance("two", cpus=2)),
            "quota exceeded: vcpus limit 3, in use 2, asked 2")
    refused(api.post("/instances", instance("two", memory=768)),
            "quota exceeded: memory_mib limit 1 GiB, in use 512 MiB, asked 768 MiB")
    refused(api.post("/instances", instance("two", disk=5)),
            "quota exceeded: disk_gb limit 10 GB, in use 6 GB, asked 5 GB")
    assert api.post("/instances", instance("two")).status_code == 200
    refused(api.post("/instances", instance("three")),
            "quota exceeded: instances limit 2, in use 2, asked 1")
    # Nothing of the refused ones was made.
    names = sorted(i["name"] for i in api.get("/instances").json())
    assert names == ["one", "two"]
    assert quota_of(api, namespace)["vcpus"]["in_use"] == 3


def test_floating_addresses_are_refused_at_create_and_at_float(portal: InProcessPortal,
                                                               agent: FakeAgent) -> None:
    namespace = make_namespace(portal, floating_addresses=1)
    api = member_api(portal, namespace)
    network = api.post("/networks", {"name": "net", "netblock": "10.60.0.0/24",
                                     "provide_nat": False}).json()
    nic = {"network_uuid": network["uuid"], "float": True}
    first = api.post("/instances", instance("one", network=[nic]))
    assert first.status_code == 200, first.text
    refused(api.post("/instances", instance("two", network=[nic])),
            "quota exceeded: floating_addresses limit 1, in use 1, asked 1")
    plain = api.post("/instances", instance("three", network=[{"network_uuid": network["uuid"]}]))
    assert plain.status_code == 200, plain.text
    interface = plain.json()["interfaces"][0]["uuid"]
    refused(api.post(f"/interfaces/{interface}/float"),
            "quota exceeded: floating_addresses limit 1, in use 1, asked 1")
    assert api.get(f"/interfaces/{interface}").json()["floating"] is None
    # A floating NIC plugged into a running instance counts the same.
    three = plain.json()["uuid"]
    agent.report_instance(three, state="created", power_state="on")
    refused(api.post(f"/instances/{three}/interfaces",
                     {"network": {"network_uuid": network["uuid"], "float": True}}),
            "quota exceeded: floating_addresses limit 1, in use 1, asked 1")
    assert len(api.get(f"/instances/{three}/interfaces").json()) == 1

    # Given back only once the address is: the instance deleted and torn down by its node.
    first_uuid = first.json()["uuid"]
    assert api.delete(f"/instances/{first_uuid}").status_code == 200
    assert quota_of(api, namespace)["floating_addresses"]["in_use"] == 1
    agent.tear_down_instance(first_uuid)
    assert quota_of(api, namespace)["floating_addresses"]["in_use"] == 0
    assert api.post(f"/interfaces/{interface}/float").status_code == 200


def test_networks_are_refused(portal: InProcessPortal) -> None:
    namespace = make_namespace(portal, networks=1)
    api = member_api(portal, namespace)
    body = {"name": "a", "netblock": "10.61.0.0/24", "provide_nat": False}
    assert api.post("/networks", body).status_code == 200
    refused(api.post("/networks", {**body, "name": "b"}),
            "quota exceeded: networks limit 1, in use 1, asked 1")
    assert [n["name"] for n in api.get("/networks").json()] == ["a"]
    network = api.get("/networks/a").json()["uuid"]
    assert api.delete(f"/networks/{network}").status_code == 200
    assert api.post("/networks", {**body, "name": "b"}).status_code == 200


def cache(api: Api, tag: str) -> Reply:
    return api.post("/artifacts", {"url": SPARE_URL.format(tag)})


def test_images_are_refused_by_count_and_by_bytes(portal: InProcessPortal,
                                                  agent: FakeAgent) -> None:
    namespace = make_namespace(portal, images=2, image_bytes=1000)
    api = member_api(portal, namespace)
    first = cache(api, "a")
    assert first.status_code == 200, first.text
    # Its bytes count once the node has them: 1200 of 1000 allowed.
    blob_uuid = _making_blob(portal, first.json()["uuid"])
    agent.report_blob(blob_uuid, b"x" * 1200)
    assert quota_of(api, namespace)["image_bytes"]["in_use"] == 1200
    refused(cache(api, "b"), "quota exceeded: image_bytes limit 1000 bytes, in use 1.2 KiB, "
                             "asked more (its size is not known yet)")
    portal.api().put(f"/auth/namespaces/{namespace}/quota", {"image_bytes": None})
    assert cache(api, "b").status_code == 200
    refused(cache(api, "c"), "quota exceeded: images limit 2, in use 2, asked 1")
    assert len(api.get("/artifacts").json()) == 2


def test_an_upload_is_refused_at_its_start_when_no_image_bytes_are_left(
        portal: InProcessPortal, agent: FakeAgent) -> None:
    namespace = make_namespace(portal, image_bytes=0)
    api = member_api(portal, namespace)
    refused(api.post("/upload"), "quota exceeded: image_bytes limit 0 bytes, in use 0 bytes, "
                                 "asked more (its size is not known yet)")
    assert portal.etcd_keys("uploads/") == []


def _making_blob(portal: InProcessPortal, artifact_uuid: str) -> str:
    kv = portal.etcd_call(lambda etcd: etcd.get(portal.keys.artifact(artifact_uuid)))
    assert kv is not None
    return next(iter(kv.json()["versions"].values()))


def test_snapshots_are_refused_by_count_and_by_bytes(portal: InProcessPortal,
                                                     agent: FakeAgent) -> None:
    namespace = make_namespace(portal, snapshots=1, snapshot_bytes=100)
    api = member_api(portal, namespace)
    made = [api.post("/instances", instance(name)).json()["uuid"] for name in ("a", "b")]
    for uuid in made:
        agent.report_instance(uuid)
    taken = api.post(f"/instances/{made[0]}/snapshot")
    assert taken.status_code == 200, taken.text
    refused(api.post(f"/instances/{made[1]}/snapshot"),
            "quota exceeded: snapshots limit 1, in use 1, asked 1")
    blob_uuid = taken.json()["vda"]["blob_uuid"]
    agent.report_blob(blob_uuid, b"s" * 150)
    # Another snapshot of the same disk is a version of the same artifact: only its bytes count.
    refused(api.post(f"/instances/{made[0]}/snapshot"),
            "quota exceeded: snapshot_bytes limit 100 bytes, in use 150 bytes, "
            "asked more (its size is not known yet)")
    assert quota_of(api, namespace)["snapshots"]["in_use"] == 1


# --- given back ----------------------------------------------------------------------------------


def test_deleting_gives_the_quota_back(portal: InProcessPortal, agent: FakeAgent) -> None:
    namespace = make_namespace(portal, instances=1, vcpus=1)
    api = member_api(portal, namespace)
    made = api.post("/instances", instance("one")).json()["uuid"]
    refused(api.post("/instances", instance("two")),
            "quota exceeded: instances limit 1, in use 1, asked 1")
    assert api.delete(f"/instances/{made}").status_code == 200
    assert api.post("/instances", instance("two")).status_code == 200
    assert quota_of(api, namespace)["instances"]["in_use"] == 1


def test_a_lowered_limit_removes_nothing_and_refuses_more(portal: InProcessPortal,
                                                          agent: FakeAgent) -> None:
    namespace = make_namespace(portal, instances=3)
    api = member_api(portal, namespace)
    for name in ("a", "b"):
        assert api.post("/instances", instance(name)).status_code == 200
    portal.api().put(f"/auth/namespaces/{namespace}/quota", {"instances": 1})
    assert len(api.get("/instances").json()) == 2
    refused(api.post("/instances", instance("c")),
            "quota exceeded: instances limit 1, in use 2, asked 1")


def test_a_deleted_namespace_takes_its_quota_with_it(portal: InProcessPortal) -> None:
    namespace = make_namespace(portal, vcpus=2)
    assert portal.etcd_keys(f"quotas/limits/{namespace}") != []
    assert portal.api().delete(f"/auth/namespaces/{namespace}").status_code == 200
    assert portal.etcd_keys(f"quotas/limits/{namespace}") == []
    # Made again, it starts from the defaults, not from what the old one had.
    assert portal.api().post("/auth/namespaces", {"namespace": namespace}).status_code == 200
    assert quota_of(portal.api(), namespace)["vcpus"]["limit"] == quotas.KINDS["vcpus"].default


# --- races ---------------------------------------------------------------------------------------


RACERS = 8
RACES = {
    "instances": ("/instances", lambda n: instance(f"racer-{n}")),
    "networks": ("/networks", lambda n: {"name": f"racer-{n}", "netblock": f"10.70.{n}.0/24",
                                         "provide_nat": False}),
    "images": ("/artifacts", lambda n: {"url": SPARE_URL.format(f"racer-{n}")}),
}


@pytest.mark.parametrize("kind", sorted(RACES))
def test_creates_racing_for_the_last_unit_exactly_one_wins(portal: InProcessPortal,
                                                           agent: FakeAgent, kind: str) -> None:
    namespace = make_namespace(portal, **{kind: 2})
    api = member_api(portal, namespace)
    path, body = RACES[kind]
    assert api.post(path, body(100)).status_code == 200  # one of two taken: one unit left
    with raced_transactions(portal) as txns:
        replies = api.concurrently([("POST", path, body(n)) for n in range(RACERS)])
    statuses = Counter(reply.status_code for reply in replies)
    assert statuses == {200: 1, 403: RACERS - 1}, [r.text for r in replies]
    assert txns["lost"] > 0, "no transaction lost a race: the creates did not interleave"
    losers = {reply.json()["error"] for reply in replies if reply.status_code == 403}
    assert losers == {f"quota exceeded: {kind} limit 2, in use 2, asked 1"}
    assert quota_of(api, namespace)[kind]["in_use"] == 2


# --- the operators' check ------------------------------------------------------------------------


def test_manage_quotas_reports_use_and_repairs_orphaned_records(portal: InProcessPortal,
                                                                agent: FakeAgent) -> None:
    from django.core.management import CommandError, call_command

    namespace = make_namespace(portal, instances=2, vcpus=None)
    api = member_api(portal, namespace)
    for name in ("a", "b"):
        assert api.post("/instances", instance(name)).status_code == 200
    portal.api().put(f"/auth/namespaces/{namespace}/quota", {"instances": 1})
    # A namespace deleted while etcd was away left its quotas behind.
    portal.etcd_call(lambda etcd: etcd.put(portal.keys.quota("gone"), quotas.limits_to_json(
        {"vcpus": 1})))
    out = io.StringIO()
    with pytest.raises(CommandError, match="namespaces that no longer exist: gone"):
        call_command("quotas", stdout=out)
    text = out.getvalue()
    assert f"{namespace}: instances 2/1, " in text
    assert "  over instances: limit 1, in use 2" in text
    assert "system: no limits" in text
    out = io.StringIO()
    call_command("quotas", "--repair", stdout=out)
    assert "orphaned: the quotas of namespace gone, which is gone; removed" in out.getvalue()
    assert portal.etcd_keys("quotas/limits/gone") == []
    call_command("quotas", stdout=io.StringIO())  # nothing left to repair


def test_racers_for_a_few_units_get_exactly_that_many(portal: InProcessPortal,
                                                      agent: FakeAgent) -> None:
    """Room for 3 vCPUs, 10 creates of one each at once: 3 made, never more."""
    namespace = make_namespace(portal, vcpus=3)
    api = member_api(portal, namespace)
    with raced_transactions(portal) as txns:
        replies = api.concurrently([("POST", "/instances", instance(f"few-{n}"))
                                    for n in range(10)])
    statuses = Counter(reply.status_code for reply in replies)
    assert statuses == {200: 3, 403: 7}, [r.text for r in replies]
    assert txns["lost"] > 0
    assert quota_of(api, namespace)["vcpus"]["in_use"] == 3
    assert len(api.get("/instances").json()) == 3
