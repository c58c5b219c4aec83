"""The API and the pages are two doors into the same services: the same change
made through each leaves the same audit rows and the same events, only the
door (``via``) tells them apart.

Both doors are driven in this process with Django's async test client, over
a real etcd (its own key prefix) and the test database. The instances are
records in etcd on a node that does not exist: setting metadata, powering
off and deleting only write desired state, so no guest is needed.
"""

from __future__ import annotations

import dataclasses
import json
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from cloudstate.etcd import Put
from cloudstate.model import Disk, InstanceObserved, InstanceSpec
from portal.accounts import people
from portal.accounts.actor import Actor
from portal.accounts.models import AuditEvent, Membership, Namespace
from portal.cloud import store
from portal.events.models import Event

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NAMESPACE = "team"
NODE = "ghost-node"


@dataclasses.dataclass
class Door:
    """One front door, as one person uses it."""

    name: str  # "api" or "page"
    client: AsyncClient
    headers: dict[str, str]

    async def post(self, path: str, data: dict[str, Any] | None = None) -> int:
        if self.name == "api":
            response = await self.client.post(path, json.dumps(data or {}),
                                              content_type="application/json",
                                              headers=self.headers)
        else:
            response = await self.client.post(path, data or {}, headers=self.headers)
        return response.status_code

    async def send(self, method: str, path: str, data: dict[str, Any] | None = None) -> int:
        response = await self.client.generic(method, path, json.dumps(data or {}),
                                             content_type="application/json",
                                             headers=self.headers)
        return response.status_code


@pytest.fixture
async def cloud_etcd(settings, etcd_server, etcd, etcd_prefix: str  # type: ignore[no-untyped-def]
                     ) -> AsyncIterator[None]:
    """The portal's services pointed at this test's own etcd prefix."""
    settings.CLOUD = dataclasses.replace(settings.CLOUD, etcd_endpoints=etcd_server.endpoints,
                                         etcd_prefix=etcd_prefix)
    try:
        yield
    finally:
        await store.etcd().close()


async def _person(username: str, role: str) -> Any:
    @sync_to_async
    def make() -> Any:
        namespace, _ = Namespace.objects.get_or_create(name=NAMESPACE)
        user = get_user_model().objects.create_user(username, password="pw-" + "x" * 12)
        Membership.objects.create(user=user, namespace=namespace, role=role)
        return user

    return await make()


async def _doors(user: Any) -> dict[str, Door]:
    """The person at the API (with a personal token) and at the pages."""
    _, secret = await sync_to_async(people.create_token)(
        Actor.own_account(user, None), "doors", 7, NAMESPACE)
    page = AsyncClient()
    await page.aforce_login(user)
    return {"api": Door("api", AsyncClient(), {"Authorization": f"Bearer {secret}"}),
            "page": Door("page", page, {})}


async def _running_instance(name: str) -> str:
    """An instance its (absent) node reports built and running."""
    spec = InstanceSpec(uuid=str(uuidlib.uuid4()), name=name, namespace=NAMESPACE, cpus=1,
                        memory=128, disks=[Disk(device="vda", size_gb=1)], node=NODE)
    observed = InstanceObserved(node=NODE, state="created", power_state="on",
                                applied_power_generation=spec.power.generation)
    keys = store.keys()
    await store.etcd().txn([], [Put(keys.instance(spec.uuid), spec.to_json()),
                                Put(keys.observed_instance(spec.uuid), observed.to_json()),
                                Put(keys.instance_name(NAMESPACE, name), spec.uuid)])
    return spec.uuid


async def _change_everything(door: Door, uuid: str) -> list[int]:
    """Set metadata, power off and delete, as this door asks for each."""
    if door.name == "api":
        return [await door.send("PUT", f"/api/instances/{uuid}/metadata/colour",
                                {"value": "blue"}),
                await door.post(f"/api/instances/{uuid}/poweroff"),
                await door.send("DELETE", f"/api/instances/{uuid}")]
    return [await door.post(f"/instances/{uuid}/metadata/", {"key": "colour", "value": "blue"}),
            await door.post(f"/instances/{uuid}/power/off/"),
            await door.post(f"/instances/{uuid}/delete/")]


async def _trail(uuid: str) -> list[dict[str, Any]]:
    """The instance's audit rows, with the instance itself named alike for
    both doors (each door worked on its own twin)."""
    rows = [row async for row in AuditEvent.objects.filter(object_id=uuid).order_by("id")]
    return [{"action": r.action, "actor": r.actor, "namespace": r.namespace,
             "kind": r.object_kind, "object": "<twin>" if r.object_id == uuid else r.object_id,
             "outcome": r.outcome, "detail": r.detail, "source": r.source} for r in rows]


async def _events(uuid: str) -> list[tuple[str, str, Any]]:
    found = Event.objects.filter(object_kind="instance", object_uuid=uuid).order_by("timestamp")
    return [(e.type, e.message, e.extra) async for e in found]


async def test_a_change_reads_the_same_whichever_door_it_came_through(cloud_etcd: None) -> None:
    alice = await _person("alice", "admin")
    doors = await _doors(alice)
    twins = {name: await _running_instance(f"web-{name}") for name in doors}

    for name, door in doors.items():
        # The API answers 200 each time; a page answers a non-htmx form with a redirect.
        expected = [200] * 3 if name == "api" else [302] * 3
        assert await _change_everything(door, twins[name]) == expected, name

    trails = {name: await _trail(uuid) for name, uuid in twins.items()}
    assert trails["api"] == trails["page"]
    assert [(row["action"], row["actor"], row["outcome"]) for row in trails["api"]] == [
        ("set-metadata", "alice", "ok"), ("poweroff", "alice", "ok"), ("delete", "alice", "ok")]
    events = {name: await _events(uuid) for name, uuid in twins.items()}
    assert events["api"] == events["page"]
    assert [message for _, message, _ in events["api"]] == [
        "metadata colour set by alice", "power off requested by alice",
        "deletion requested by alice"]
    # Only the door differs, and the trail says which it was.
    for name, uuid in twins.items():
        assert {row.via async for row in AuditEvent.objects.filter(object_id=uuid)} == {name}

    # The admin pages filter the trail by those closed vocabularies.
    audit_page = await doors["page"].client.get(
        "/manage/audit/", {"namespace": NAMESPACE, "via": "api", "action": "poweroff"})
    assert audit_page.status_code == 200
    shown = audit_page.content.decode()
    assert twins["api"] in shown and twins["page"] not in shown


async def test_a_refusal_reads_the_same_whichever_door_it_came_through(
        cloud_etcd: None) -> None:
    victor = await _person("victor", "viewer")
    doors = await _doors(victor)
    twins = {name: await _running_instance(f"look-{name}") for name in doors}

    assert await doors["api"].send("DELETE", f"/api/instances/{twins['api']}") == 403
    assert await doors["page"].post(f"/instances/{twins['page']}/delete/") == 403
    assert await doors["api"].post(f"/api/instances/{twins['api']}/poweroff") == 403
    assert await doors["page"].post(f"/instances/{twins['page']}/power/off/") == 403

    trails = {name: await _trail(uuid) for name, uuid in twins.items()}
    assert trails["api"] == trails["page"]
    assert [(row["action"], row["actor"], row["outcome"]) for row in trails["api"]] == [
        ("delete", "victor", "denied"), ("poweroff", "victor", "denied")]
    assert "your role in namespace team is viewer" in trails["api"][0]["detail"]
    # Nothing was asked of either instance.
    assert await _events(twins["api"]) == await _events(twins["page"]) == []
