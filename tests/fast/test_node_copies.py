"""Each node's copies of its instances' records (nodeagent.scope): written
with every change of the record, and by the janitor for records older than
the copies."""

from __future__ import annotations

import json

from portal.live import janitor
from portal.live.hub import current_hub
from tests.support.fakeagent import FakeAgent
from tests.support.fleet import Guest, put_fleet
from tests.support.inprocess import InProcessPortal


def _value(portal: InProcessPortal, key: str) -> dict | None:
    kv = portal.etcd_call(lambda etcd: etcd.get(key))
    return None if kv is None else json.loads(kv.value)


def test_a_record_and_its_node_s_copy_change_together(portal: InProcessPortal,
                                                      agent: FakeAgent) -> None:
    keys, api = portal.keys, portal.api()
    made = api.post("/instances", {"name": "copied", "cpus": 1, "memory": 64,
                                   "disk": [{"size": 1}]})
    assert made.status_code == 200, made.text
    uuid, node = made.json()["uuid"], made.json()["node"]
    copy = keys.node_instance(node, uuid)
    assert _value(portal, copy) == _value(portal, keys.instance(uuid))
    agent.report_instance(uuid)
    assert api.post(f"/instances/{uuid}/poweroff").status_code == 200
    assert _value(portal, copy)["power"]["action"] == "off"
    assert _value(portal, copy) == _value(portal, keys.instance(uuid))
    assert api.delete(f"/instances/{uuid}").status_code == 200
    assert _value(portal, copy)["desired"] == "deleted"


def test_the_janitor_copies_older_records(portal: InProcessPortal) -> None:
    keys = portal.keys
    made = put_fleet(portal, "system", [Guest(name="old", node="elsewhere",
                                              address="10.0.0.5")])
    uuid = made["old"]
    assert _value(portal, keys.node_instance("elsewhere", uuid)) is None
    iface_key = next(k for k in portal.etcd_keys("interfaces/"))
    assert _value(portal, iface_key).get("node") is None

    async def sweep() -> int:
        live = await current_hub()
        return await janitor.copy_instances(live.mirror, live.keys)

    assert portal.loop.run(sweep()) == 2
    assert _value(portal, keys.node_instance("elsewhere", uuid)) == \
        _value(portal, keys.instance(uuid))
    assert _value(portal, iface_key)["node"] == "elsewhere"
    # Nothing left to do: a second sweep writes nothing.
    assert portal.loop.run(sweep()) == 0
