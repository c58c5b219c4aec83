"""The agent's sampler, its routes and what it tells Prometheus and Shaken
Fist's client, over a stand-in for libvirt (the integration tests read a
real one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudstate import signing, tls, usage
from cloudstate.consoles import AGENT_GRANT_PURPOSE, grant_claims
from cloudstate.model import InstanceSpec
from nodeagent.events import EventLog, EventSpool
from nodeagent.hypervisor import HypervisorError
from nodeagent.server import AgentServer
from nodeagent.usage.history import HistoryStore
from nodeagent.usage.resources import NodeFacts, ResourcesReporter, process_key
from nodeagent.usage.routes import UsageRoutes
from nodeagent.usage.sampler import UsageSampler
from nodeagent.workqueue import WorkQueue
from tests.support.pki import make_pki

SECRET = b"a-test-cluster-secret-of-enough-length"
NODE = "node-a"
A = "6f1c1bd2-6bd6-4ad1-9a3f-0d6c2b3c9a10"
B = "0b7d3c2a-9f0e-4c55-8d21-3f7a5e9c1b44"
ELSEWHERE = "a0c9a1f0-1111-4222-8333-944455556666"
T0 = 1_699_999_200.0


def _spec(uuid: str, node: str = NODE, desired: str = "active") -> InstanceSpec:
    return InstanceSpec(uuid=uuid, name=f"vm-{uuid[:4]}", namespace="ns1", node=node,
                        cpus=1, memory=128, disks=[], desired=desired)


def _stats(cpu_seconds: float, rd: int = 0) -> dict[str, Any]:
    return {"cpu.time": int(cpu_seconds * 1e9), "vcpu.current": 1, "balloon.rss": 200_000,
            "balloon.maximum": 131072, "block.count": 1, "block.0.rd.bytes": rd,
            "block.0.wr.bytes": 0, "net.count": 0}


class FakeHypervisor:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.failing = False
        self.calls = 0

    async def domain_stats(self) -> list[tuple[str, dict[str, Any]]]:
        self.calls += 1
        if self.failing:
            raise HypervisorError("libvirtd is gone")
        return self.records


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    hypervisor, clock = FakeHypervisor(), Clock()
    placed = {A: _spec(A), B: _spec(B)}
    sampler = UsageSampler(interval=10, hypervisor=hypervisor,  # type: ignore[arg-type]
                           store=HistoryStore(tmp_path / "usage"), placed=lambda: placed,
                           clock=clock)
    pki = make_pki(tmp_path / "pki", agents=[NODE], monitors=["prometheus"]).directory
    return {"hypervisor": hypervisor, "clock": clock, "placed": placed, "sampler": sampler,
            "pki": pki}


def _server(world: dict[str, Any]) -> AgentServer:
    """An agent server as the agent runs it: TLS with the node's certificate."""
    return AgentServer(host="127.0.0.1", port=0, node=NODE, secret=SECRET,
                       server_tls=tls.ServerTls(tls.agent(world["pki"], NODE)))


def _client(credentials: tls.Credentials) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=tls.client_context(credentials)))


async def test_samples_become_history_for_the_node_and_each_guest_placed_here(
        world: dict[str, Any]) -> None:
    hypervisor, clock, sampler = world["hypervisor"], world["clock"], world["sampler"]
    hypervisor.records = [(A, _stats(100)), (ELSEWHERE, _stats(5))]
    await sampler.sample()
    clock.now += 10
    hypervisor.records = [(A, _stats(105, rd=4096)), (ELSEWHERE, _stats(9))]
    sample = await sampler.sample()
    assert set(sample.guests) == {A}  # another cloud's (or node's) domain is not ours
    assert sample.figures[A]["cpu"] == pytest.approx(0.5)
    assert sample.figures[A]["disk_read"] == pytest.approx(409.6)
    assert sample.node["guests"] == 1.0
    assert sorted(sampler.store.keys()) == sorted([A, "node"])
    _, columns = sampler.store.find(A, usage.INSTANCE_METRICS).series(usage.TIERS[0], clock.now)
    assert columns["cpu"][-2:] == [None, 0.5]


async def test_a_guest_leaving_the_node_takes_its_history_along(world: dict[str, Any]) -> None:
    hypervisor, clock, sampler, placed = (world[k] for k in ("hypervisor", "clock", "sampler",
                                                             "placed"))
    hypervisor.records = [(A, _stats(1)), (B, _stats(1))]
    await sampler.sample()
    # B powered off: still placed here, its history stays.
    hypervisor.records = [(A, _stats(2))]
    clock.now += 10
    await sampler.sample()
    assert B in set(sampler.store.keys())
    # B deleted and its domain gone: its history goes.
    placed[B] = _spec(B, desired="deleted")
    clock.now += 10
    await sampler.sample()
    assert set(sampler.store.keys()) == {A, "node"}


async def test_libvirt_failing_still_samples_the_host_and_keeps_guest_histories(
        world: dict[str, Any]) -> None:
    hypervisor, clock, sampler = world["hypervisor"], world["clock"], world["sampler"]
    hypervisor.records = [(A, _stats(1))]
    await sampler.sample()
    hypervisor.failing = True
    world["placed"][A] = _spec(A, desired="deleted")
    clock.now += 10
    sample = await sampler.sample()
    assert sample.node["guests"] is None and sample.node["memory"] > 0
    assert A in set(sampler.store.keys())  # unknown whether its domain is gone yet


async def test_live_samples_go_only_to_topics_someone_listens_to(world: dict[str, Any]) -> None:
    hypervisor, clock, sampler = world["hypervisor"], world["clock"], world["sampler"]
    hypervisor.records = [(A, _stats(1)), (B, _stats(1))]
    with sampler.topics.listen(usage.instance_topic(A)) as queue, \
            sampler.topics.listen(usage.SUMMARY_TOPIC) as summaries:
        await sampler.sample()
        clock.now += 10
        hypervisor.records = [(A, _stats(3)), (B, _stats(1.5))]
        await sampler.sample()
        assert queue.qsize() == 2
        queue.get_nowait()
        point = queue.get_nowait()
        assert point == {"t": T0 + 10, "values": {
            "cpu": 0.2, "memory": 204_800_000.0, "disk_read": 0.0, "disk_write": 0.0,
            "net_rx": 0.0, "net_tx": 0.0}}
        summaries.get_nowait()
        summary = summaries.get_nowait()
        assert summary["instances"][B]["cpu"] == 0.05
        assert summary["instances"][B]["cpu_hour"][-1] == 0.05
        assert len(summary["instances"][B]["cpu_hour"]) == usage.SPARK_POINTS
    assert not sampler.topics.listened(usage.SUMMARY_TOPIC)


async def test_a_slow_listener_loses_old_points_not_the_agents_memory(
        world: dict[str, Any]) -> None:
    hypervisor, clock, sampler = world["hypervisor"], world["clock"], world["sampler"]
    hypervisor.records = [(A, _stats(1))]
    with sampler.topics.listen(usage.NODE_TOPIC) as queue:
        for _ in range(20):
            await sampler.sample()
            clock.now += 10
        assert queue.qsize() == 8
        assert queue.get_nowait()["t"] == T0 + 120


async def test_figures_now_are_read_afresh_when_sampling_is_off(tmp_path: Path) -> None:
    hypervisor = FakeHypervisor()
    hypervisor.records = [(A, _stats(1))]
    sampler = UsageSampler(interval=0, hypervisor=hypervisor,  # type: ignore[arg-type]
                           store=HistoryStore(tmp_path), placed=lambda: {A: _spec(A)})
    await sampler.run()  # returns at once: nothing is sampled
    assert hypervisor.calls == 0
    sample = await sampler.current()
    assert set(sample.guests) == {A} and hypervisor.calls == 1
    assert list(sampler.store.keys()) == []  # not kept


async def test_resources_events_carry_shaken_fists_keys(world: dict[str, Any],
                                                        tmp_path: Path) -> None:
    hypervisor, sampler = world["hypervisor"], world["sampler"]
    hypervisor.records = [(A, _stats(2)), (B, _stats(3))]
    events = EventLog(EventSpool(tmp_path / "spool"))
    reporter = ResourcesReporter(node=NODE, sampler=sampler, events=events, facts=lambda: NodeFacts(
        is_network_node=True, disks={"sfroot": str(tmp_path), "instances": str(tmp_path)},
        queue_waiting=2, queue_processing=1))
    await reporter.report()
    [(_, event)] = events.spool.pending()
    assert (event["kind"], event["uuid"], event["type"]) == ("node", NODE, "resources")
    assert event["message"] == "updated node resources and package versions"
    extra = event["extra"]
    assert all(isinstance(v, bool | int | float) for v in extra.values())
    assert extra["is_network_node"] is True and extra["instances_total"] == 2
    assert extra["cpu_total_instance_cpu_time"] == 5_000_000_000
    assert extra["memory_total_instance_max"] == 256
    assert extra["node_queue_waiting"] == 2
    assert extra["disk_free_sfroot"] == extra["disk_free_instances"] > 0
    assert extra["disk_total"] > extra["disk_used"] > 0
    # The agent's own CPU share is only given over a minute or more, as Shaken Fist does.
    assert not any(key.startswith("process_cpu_fraction_") for key in extra)
    assert process_key("sfcloud-nodeagent") == "sfcloud_nodeagent"


# --- the routes, through a real agent server ------------------------------------------------


@pytest.fixture
async def served(world: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    server = _server(world)
    queue = WorkQueue(lambda key: asyncio.sleep(0), workers=1)
    queue.add("x")
    UsageRoutes(server=server, sampler=world["sampler"],
                on_this_node=lambda uuid: uuid in world["placed"],
                queues={"instances": queue}, metrics_token="a-metrics-token-1234").register()
    await server.start()
    # Prometheus reads /metrics with a monitor's certificate; the portal reads the rest.
    async with _client(tls.portal(world["pki"])) as http, \
            _client(tls.monitor(world["pki"], "prometheus")) as monitor:
        yield {**world, "server": server, "http": http, "monitor": monitor,
               "base": f"https://127.0.0.1:{server.port}"}
    await server.stop()


def _grant(path: str, query: dict[str, str] | None = None) -> dict[str, str]:
    token = signing.sign(SECRET, AGENT_GRANT_PURPOSE,
                         grant_claims(node=NODE, method="GET", path=path, query=query), 30)
    return {"Authorization": f"Bearer {token}"}


async def _get(served: dict[str, Any], path: str, query: dict[str, str] | None = None,
               headers: dict[str, str] | None = None, as_monitor: bool = False
               ) -> tuple[int, Any]:
    """GET under a grant of exactly this path and query (or ``headers``), as
    the portal (or as Prometheus)."""
    http = served["monitor"] if as_monitor else served["http"]
    async with http.get(served["base"] + path, params=query,
                                  headers=_grant(path, query) if headers is None else headers,
                                  ) as answer:
        body = await answer.read()
        try:
            return answer.status, json.loads(body)
        except ValueError:
            return answer.status, body.decode()


async def test_history_routes_answer_the_range_asked_for(served: dict[str, Any]) -> None:
    served["hypervisor"].records = [(A, _stats(1))]
    await served["sampler"].sample()
    status, answer = await _get(served, usage.instance_path(A), {"range": "day"})
    assert status == 200
    assert (answer["range"], answer["step"], answer["interval"]) == ("day", 300, 10)
    assert len(answer["times"]) == 288 and answer["metrics"]["memory"][-1] == 204_800_000.0
    status, answer = await _get(served, usage.NODE_PATH)
    assert status == 200 and answer["range"] == "hour" and len(answer["times"]) == 360
    assert set(answer["metrics"]) == set(usage.NODE_METRICS)
    # Placed here but never sampled (it is off): an empty history, not an error.
    status, answer = await _get(served, usage.instance_path(B))
    assert status == 200 and answer["times"] == [] and answer["metrics"]["cpu"] == []


@pytest.mark.parametrize("path, query, status, error", [
    (usage.instance_path(A), {"range": "year"}, 400, "range: must be one of hour, day, week"),
    (usage.instance_path(ELSEWHERE), None, 404, "no such instance on this node"),
    (usage.instance_path("not-a-uuid"), None, 400, "not an instance UUID"),
])
async def test_history_routes_refuse_clearly(served: dict[str, Any], path: str,
                                             query: dict[str, str] | None,
                                             status: int, error: str) -> None:
    assert await _get(served, path, query) == (status, {"error": error, "status": status})


async def test_a_live_route_sends_each_new_sample(served: dict[str, Any]) -> None:
    served["hypervisor"].records = [(A, _stats(1))]
    path = usage.live_path(usage.instance_topic(A))
    async with served["http"].ws_connect(served["base"] + path, headers=_grant(path)) as ws:
        for _ in range(50):  # the listener is registered once the handler runs
            if served["sampler"].topics.listened(usage.instance_topic(A)):
                break
            await asyncio.sleep(0.01)
        await served["sampler"].sample()
        message = await ws.receive_json(timeout=5)
        assert message["t"] == T0 and message["values"]["memory"] == 204_800_000.0
    for _ in range(50):
        if not served["sampler"].topics.listened(usage.instance_topic(A)):
            break
        await asyncio.sleep(0.01)
    assert served["sampler"].topics.listeners == 0


async def test_metrics_need_the_token_and_parse_as_prometheus_text(
        served: dict[str, Any]) -> None:
    served["hypervisor"].records = [(A, _stats(7.5, rd=1234))]
    assert (await _get(served, "/metrics", headers={}, as_monitor=True))[0] == 401
    assert (await _get(served, "/metrics", headers={"Authorization": "Bearer wrong"},
                       as_monitor=True))[0] == 401
    status, text = await _get(served, "/metrics", as_monitor=True,
                              headers={"Authorization": "Bearer a-metrics-token-1234"})
    assert status == 200
    # The monitor's certificate opens /metrics and nothing else.
    assert (await _get(served, usage.NODE_PATH, as_monitor=True))[0] == 403
    found = {sample.name: sample for family in text_string_to_metric_families(text)
             for sample in family.samples if not sample.labels or "uuid" in sample.labels
             or "queue" in sample.labels}
    cpu = found["sfcloud_domain_cpu_seconds_total"]
    assert cpu.value == 7.5 and cpu.labels == {"uuid": A, "name": "vm-6f1c", "namespace": "ns1"}
    assert found["sfcloud_domain_disk_read_bytes_total"].value == 1234
    assert found["sfcloud_domain_memory_resident_bytes"].value == 200_000 * 1024
    assert found["sfcloud_node_guests_running"].value == 1
    assert found["sfcloud_agent_queue_waiting"].value == 1
    assert found["sfcloud_node_memory_total_bytes"].value > 0
    assert "process_cpu_seconds_total" in found


async def test_metrics_are_off_without_a_token(world: dict[str, Any]) -> None:
    server = _server(world)
    UsageRoutes(server=server, sampler=world["sampler"], on_this_node=lambda uuid: False,
                queues={}, metrics_token=None).register()
    await server.start()
    try:
        async with _client(tls.monitor(world["pki"], "prometheus")) as http, \
                http.get(f"https://127.0.0.1:{server.port}/metrics",
                         headers={"Authorization": "Bearer anything"}) as answer:
            assert answer.status == 404
            assert "SFCLOUD_METRICS_TOKEN" in (await answer.json())["error"]
    finally:
        await server.stop()


async def test_the_loop_samples_on_the_intervals_boundaries_however_slow_libvirt_is(
        tmp_path: Path) -> None:
    class SlowHypervisor(FakeHypervisor):
        async def domain_stats(self) -> list[tuple[str, dict[str, Any]]]:
            await asyncio.sleep(0.3)
            return await super().domain_stats()

    hypervisor = SlowHypervisor()
    hypervisor.records = [(A, _stats(1))]
    sampler = UsageSampler(interval=1, hypervisor=hypervisor,  # type: ignore[arg-type]
                           store=HistoryStore(tmp_path), placed=lambda: {A: _spec(A)})
    with sampler.topics.listen(usage.instance_topic(A)) as queue:
        running = asyncio.create_task(sampler.run())
        points = [await asyncio.wait_for(queue.get(), 3) for _ in range(3)]
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    times = [point["t"] for point in points]
    assert all(t == int(t) for t in times), times  # the boundary, not when libvirt answered
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == [1, 1]
    assert sampler.latest is not None and sampler.latest.taken > sampler.latest.at


async def test_a_failing_sample_never_stops_the_loop(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    hypervisor = FakeHypervisor()
    calls = []

    def placed() -> dict[str, InstanceSpec]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("No space left on device")
        return {A: _spec(A)}

    sampler = UsageSampler(interval=1, hypervisor=hypervisor,  # type: ignore[arg-type]
                           store=HistoryStore(tmp_path), placed=placed)
    running = asyncio.create_task(sampler.run())
    try:
        for _ in range(40):
            if len(calls) >= 2:
                break
            await asyncio.sleep(0.1)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert len(calls) >= 2 and "a usage sample failed" in caplog.text
