"""The API and the pages are two doors into the same services: the same change
made through each leaves the same audit rows and the same events, only the
door (``via``) tells them apart.

Both doors are driven in this process (tests.support.inprocess). The
instances are records in etcd on the fake agent's node, reported running:
setting metadata, powering off and deleting only write desired state, so no
guest is needed.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from cloudstate.model import Disk, InstanceSpec
from portal.accounts.models import AuditEvent
from portal.events.models import Event
from tests.fast.conftest import TEAM
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import Api, Browser, InProcessPortal, Person

NAMESPACE = TEAM


def _doors(person: Person) -> dict[str, Api | Browser]:
    """The person at the API (with a personal token) and at the pages."""
    return {"api": person.api(NAMESPACE), "page": person.browser}


def _running_instance(portal: InProcessPortal, agent: FakeAgent, name: str) -> str:
    """An instance its node reports built and running."""
    spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name=name, namespace=NAMESPACE, cpus=1,
                        memory=128, disks=[Disk(device="vda", size_gb=1)], node=agent.node)
    keys = portal.keys
    portal.etcd_call(lambda etcd: etcd.put(keys.instance(spec.uuid), spec.to_json()))
    agent.report_instance(spec.uuid, state="created", power_state="on")
    return spec.uuid


def _change_everything(door: Api | Browser, uuid: str) -> list[int]:
    """Set metadata, power off and delete, as this door asks for each."""
    if isinstance(door, Api):
        return [door.put(f"/instances/{uuid}/metadata/colour", {"value": "blue"}).status_code,
                door.post(f"/instances/{uuid}/poweroff").status_code,
                door.delete(f"/instances/{uuid}").status_code]
    return [door.post(f"/instances/{uuid}/metadata/", {"key": "colour", "value": "blue"}
                      ).status_code,
            door.post(f"/instances/{uuid}/power/off/").status_code,
            door.post(f"/instances/{uuid}/delete/").status_code]


def _trail(uuid: str) -> list[dict[str, Any]]:
    """The instance's audit rows, with the instance itself named alike for
    both doors (each door worked on its own twin)."""
    rows = AuditEvent.objects.filter(object_id=uuid).order_by("id")
    return [{"action": r.action, "actor": r.actor, "namespace": r.namespace,
             "kind": r.object_kind, "object": "<twin>" if r.object_id == uuid else r.object_id,
             "outcome": r.outcome, "detail": r.detail, "source": r.source} for r in rows]


def _events(uuid: str) -> list[tuple[str, str, Any]]:
    found = Event.objects.filter(object_kind="instance", object_uuid=uuid).order_by("timestamp")
    return [(e.type, e.message, e.extra) for e in found]


def test_a_change_reads_the_same_whichever_door_it_came_through(
        portal: InProcessPortal, agent: FakeAgent) -> None:
    alice = portal.person("alice", {NAMESPACE: "admin"})
    doors = _doors(alice)
    twins = {name: _running_instance(portal, agent, f"web-{name}") for name in doors}

    for name, door in doors.items():
        # The API answers 200 each time; a page answers a non-htmx form with a redirect.
        expected = [200] * 3 if name == "api" else [302] * 3
        assert _change_everything(door, twins[name]) == expected, name

    trails = {name: _trail(uuid) for name, uuid in twins.items()}
    assert trails["api"] == trails["page"]
    assert [(row["action"], row["actor"], row["outcome"]) for row in trails["api"]] == [
        ("set-metadata", "alice", "ok"), ("poweroff", "alice", "ok"), ("delete", "alice", "ok")]
    events = {name: _events(uuid) for name, uuid in twins.items()}
    assert events["api"] == events["page"]
    assert [message for _, message, _ in events["api"]] == [
        "metadata colour set by alice", "power off requested by alice",
        "deletion requested by alice"]
    # Only the door differs, and the trail says which it was.
    for name, uuid in twins.items():
        assert {row.via for row in AuditEvent.objects.filter(object_id=uuid)} == {name}

    # The admin pages filter the trail by those closed vocabularies.
    audit_page = alice.browser.get(
        "/manage/audit/", {"namespace": NAMESPACE, "via": "api", "action": "poweroff"})
    assert audit_page.status_code == 200
    shown = audit_page.text
    assert twins["api"] in shown and twins["page"] not in shown


def test_a_refusal_reads_the_same_whichever_door_it_came_through(
        portal: InProcessPortal, agent: FakeAgent) -> None:
    victor = portal.person("victor", {NAMESPACE: "viewer"})
    doors = _doors(victor)
    api, page = doors["api"], doors["page"]
    twins = {name: _running_instance(portal, agent, f"look-{name}") for name in doors}

    assert api.delete(f"/instances/{twins['api']}").status_code == 403
    assert page.post(f"/instances/{twins['page']}/delete/").status_code == 403
    assert api.post(f"/instances/{twins['api']}/poweroff").status_code == 403
    assert page.post(f"/instances/{twins['page']}/power/off/").status_code == 403

    trails = {name: _trail(uuid) for name, uuid in twins.items()}
    assert trails["api"] == trails["page"]
    assert [(row["action"], row["actor"], row["outcome"]) for row in trails["api"]] == [
        ("delete", "victor", "denied"), ("poweroff", "victor", "denied")]
    assert "your role in namespace team is viewer" in trails["api"][0]["detail"]
    # Nothing was asked of either instance.
    assert _events(twins["api"]) == _events(twins["page"]) == []
