"""The portal's side of usage: the dashboard's figures from a mirror of etcd,
sparklines and figures in templates, and /metrics (off, refused, served)."""

from __future__ import annotations

import json

import pytest
from django.template import Context, Template
from django.test import RequestFactory
from prometheus_client.parser import text_string_to_metric_families

from cloudstate.etcd import KeyValue
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import Disk, InstanceObserved, InstanceSpec, InterfaceSpec, NodeInfo
from portal import metrics
from portal.cloud.instances import InstanceRecord
from portal.cloud.overview import Capacity, overview
from portal.usage.templatetags.usage import cores_percent, share_percent, sort_value, sparkline

KEYS = Keys("/t")


class FakeMirror:
    def __init__(self) -> None:
        self.data: dict[str, KeyValue] = {}

    def put(self, key: str, value: bytes | str) -> None:
        raw = value.encode() if isinstance(value, str) else value
        self.data[key] = KeyValue(key, raw, len(self.data) + 1, 1, 1, 0)

    def get(self, key: str) -> KeyValue | None:
        return self.data.get(key)

    def items(self, prefix: str = "") -> list[KeyValue]:
        return [kv for key, kv in self.data.items() if key.startswith(prefix)]


def _instance(mirror: FakeMirror, name: str, namespace: str, node: str, *, cpus: int = 1,
              state: str = "created", power: str = "on", desired: str = "active") -> None:
    spec = InstanceSpec(uuid=f"uuid-{name}", name=name, namespace=namespace, cpus=cpus,
                        memory=256, disks=[Disk(device="vda", size_gb=2)], node=node,
                        desired=desired)
    mirror.put(KEYS.instance(spec.uuid), spec.to_json())
    observed = InstanceObserved(node=node, state=state, power_state=power)
    mirror.put(KEYS.observed_instance(spec.uuid), observed.to_json())


def _node(mirror: FakeMirror, name: str, *, alive: bool) -> None:
    info = NodeInfo(name=name, ip="10.0.0.1", vcpus=4, memory_mib=9216, disk_total_gb=105,
                    disk_free_gb=100, virt_type="qemu", machine="pc")
    mirror.put(KEYS.node(name), info.to_json())
    if alive:
        mirror.put(KEYS.node_alive(name), "1")


def _records(mirror: FakeMirror) -> list[InstanceRecord]:
    return [InstanceRecord.from_kvs(kv, mirror.get(KEYS.observed_instance(kv.key.rsplit("/")[-1])))
            for kv in mirror.items(KEYS.instances)]


@pytest.fixture
def cloud() -> FakeMirror:
    mirror = FakeMirror()
    _node(mirror, "a", alive=True)
    _node(mirror, "b", alive=False)
    _instance(mirror, "web", "shop", "a", cpus=2)
    _instance(mirror, "db", "shop", "a", state="creating", power="initial")
    _instance(mirror, "old", "shop", "b", power="off")
    _instance(mirror, "lab", "lab", "a")
    iface = InterfaceSpec(uuid="i1", network_uuid="n1", instance_uuid="uuid-web",
                          namespace="shop", order=0, macaddr="02:00:00:00:00:01",
                          ipv4="10.1.0.5", floating="192.0.2.10")
    mirror.put(KEYS.interface("i1"), iface.to_json())
    mirror.put(KEYS.address(FLOATING_POOL, "192.0.2.10"), "{}")
    return mirror


def test_a_namespace_sees_its_instances_by_state_and_its_use(cloud: FakeMirror) -> None:
    found = overview(cloud, KEYS, _records(cloud), scope=frozenset({"shop"}), sees_nodes=False,
                     namespace="shop")
    assert found.instances == 3
    assert found.states == [("creating", 1), ("created", 2)]
    assert found.power == [("on", 1), ("off", 1), ("initial", 1)]
    assert found.nodes is None and found.vcpus is None  # nodes are for members of system
    used = {line.name: line.used for line in found.use}
    assert {name: used[name] for name in ("instances", "vcpus", "memory_mib", "disk_gb",
                                          "floating_addresses", "networks", "images")} == {
        "instances": 3, "vcpus": 4, "memory_mib": 768, "disk_gb": 6, "floating_addresses": 1,
        "networks": 0, "images": 0}
    # No quota record: no limits.
    assert all(line.limit is None and line.percent is None for line in found.use)


def test_members_of_system_see_capacity_of_the_nodes_online(cloud: FakeMirror,
                                                            settings) -> None:  # type: ignore[no-untyped-def]
    settings.SCHEDULER_CPU_OVERCOMMIT = 16
    settings.SCHEDULER_RAM_RESERVED_MIB = 1024
    settings.SCHEDULER_DISK_RESERVED_GB = 5
    found = overview(cloud, KEYS, _records(cloud), scope=None, sees_nodes=True, namespace=None)
    assert found.instances == 4 and found.use is None
    assert (found.online, found.offline) == (1, 1)
    assert [row.name for row in found.nodes] == ["a", "b"]
    a = found.nodes[0]
    assert (a.vcpus, a.memory, a.disk) == (Capacity(4, 64), Capacity(768, 8192), Capacity(6, 100))
    # Totals count the nodes online only.
    assert found.vcpus == Capacity(4, 64) and found.vcpus.free == 60
    assert found.memory.percent == 9
    assert found.floating is None  # this cloud has no floating network


def test_a_deleted_instance_still_holds_its_node_until_it_is_gone(cloud: FakeMirror) -> None:
    _instance(cloud, "going", "shop", "a", desired="deleted", state="deleting")
    found = overview(cloud, KEYS, [r for r in _records(cloud) if r.spec.desired != "deleted"],
                     scope=None, sees_nodes=True, namespace=None)
    assert found.instances == 4
    assert found.nodes[0].vcpus.used == 5  # the scheduler still counts it, and so do we


def test_sparklines_are_svg_with_gaps_and_no_style() -> None:
    svg = str(sparkline([0.1, 0.2, None, 0.5, 1.0], "CPU"))
    assert svg.startswith('<svg class="sparkline"') and 'aria-label="CPU"' in svg
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 0  # a gap splits the line
    assert "style" not in svg
    lone = str(sparkline([None, 0.3, None], "CPU"))
    assert lone.count("<circle") == 1
    assert "sparkline--empty" in str(sparkline(None, "CPU"))
    assert 'title="CPU: no figures yet"' in str(sparkline([None, None], "CPU"))
    escaped = str(sparkline([1.0, 2.0], '"><script>'))
    assert "<script>" not in escaped


def test_figures_read_as_people_expect() -> None:
    assert cores_percent(0.953) == "95 %" and cores_percent(None) == "–"
    assert cores_percent("") == "–"  # a missing template variable
    assert share_percent(1.0, 4) == "25 %" and share_percent(1.0, 0) == "–"
    assert sort_value(None) == "-1" and sort_value(0.5) == "0.5000"
    rendered = Template("{% load usage %}{{ figures|item:'a'|cores_percent }}").render(
        Context({"figures": {"a": 1.5}}))
    assert rendered == "150 %"


def test_metrics_are_off_refused_or_served(monkeypatch: pytest.MonkeyPatch) -> None:
    factory = RequestFactory()
    monkeypatch.delenv("SFCLOUD_METRICS_TOKEN", raising=False)
    off = metrics.view(factory.get("/metrics"))
    assert off.status_code == 404 and "SFCLOUD_METRICS_TOKEN" in json.loads(off.content)["error"]
    monkeypatch.setenv("SFCLOUD_METRICS_TOKEN", "a-long-enough-token")
    assert metrics.view(factory.get("/metrics")).status_code == 401
    assert metrics.view(factory.get("/metrics", HTTP_AUTHORIZATION="Bearer nope")).status_code \
        == 401
    metrics.REQUESTS.labels("api", "GET", "/api/instances", "200").inc()
    served = metrics.view(factory.get("/metrics",
                                      HTTP_AUTHORIZATION="Bearer a-long-enough-token"))
    assert served.status_code == 200
    names = {sample.name for family in text_string_to_metric_families(served.content.decode())
             for sample in family.samples}
    assert {"sfcloud_portal_requests_total", "process_cpu_seconds_total"} <= names


def test_websockets_are_counted_by_what_they_serve() -> None:
    assert metrics.websocket_kind("/ws/instances/abc/") == "instances"
    assert metrics.websocket_kind("/ws/agent/events/") == "agent"
    assert metrics.websocket_kind("/elsewhere") == "other"
