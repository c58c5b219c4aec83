"""What the control plane costs with many nodes and instances (issue 16).

    python bench/scale.py [--nodes 10] [--instances 1000] [--concurrency 20]
                          [--browsers 50] [--power-sample 1000] [--json out.json]

Starts etcd, the portal and --nodes simulated node agents (bench/simfleet.py:
the real agent over libvirt's test driver, one process each), then, through
the API at --concurrency clients:

1. creates one node's share of the instances on the first node (its agent's
   memory is read with 100-odd instances in a cloud of that many), then the
   rest where the scheduler puts them, and waits for all to run;
2. reads the API's list and the portal's list page, connects --browsers
   websocket clients to the live list and changes one row's state (its
   power) a few times;
3. powers --power-sample instances off and on again, then deletes them all.

It prints every figure of the issue's table beside its goal, with the
machine's load at each step, and writes them as JSON with --json.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
import websockets
from simfleet import METRICS_TOKEN, SimulatedFleet, simulated_cloud
from support import percentile

from cloudstate.etcd import Etcd
from cloudstate.model import InstanceObserved, InstanceSpec
from tests.support.cloud import ApiClient
from tests.support.consoles import web_login
from tests.support.simulated import node_name

MEMORY_MIB = 64
FANOUT_ROUNDS = 4


@dataclass
class Figures:
    """Every measured figure, by name, and how it compares with its goal."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    load: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: Any, goal: str = "stated",
            met: bool | None = None, **detail: Any) -> None:
        row = {"name": name, "value": value, "goal": goal, "met": met,
               "load": round(os.getloadavg()[0], 2), **detail}
        self.rows.append(row)
        shown = "" if met is None else ("  met" if met else "  NOT MET")
        print(f"  {name}: {value}  (goal: {goal}){shown}  [load {row['load']}]", flush=True)

    def note_load(self, step: str) -> None:
        self.load[step] = [round(x, 2) for x in os.getloadavg()]
        print(f"-- {step} (load {self.load[step]})", flush=True)


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"p50": round(statistics.median(values), 4),
            "p95": round(percentile(values, 0.95), 4),
            "p99": round(percentile(values, 0.99), 4),
            "max": round(max(values), 4), "n": len(values)}


class Clients:
    """--concurrency API clients, each its own session (one per thread)."""

    def __init__(self, fleet: SimulatedFleet, concurrency: int):
        self.fleet = fleet
        self.concurrency = concurrency
        self._local = threading.local()

    def api(self) -> ApiClient:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.fleet.cloud.api()
        return client

    def run(self, calls: Iterable[Callable[[ApiClient], requests.Response]]
            ) -> tuple[list[float], list[str], list[requests.Response]]:
        """Each call timed; (latencies, errors, responses)."""
        latencies: list[float] = []
        errors: list[str] = []
        answers: list[requests.Response] = []
        lock = threading.Lock()

        def one(call: Callable[[ApiClient], requests.Response]) -> None:
            started = time.perf_counter()
            try:
                response = call(self.api())
            except requests.RequestException as exc:
                with lock:
                    errors.append(str(exc))
                return
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                answers.append(response)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")

        pool = concurrent.futures.ThreadPoolExecutor(self.concurrency)
        try:
            for future in [pool.submit(one, call) for call in calls]:
                future.result()
        finally:
            # Interrupted (Ctrl-C): what has not started yet never does.
            pool.shutdown(cancel_futures=True)
        return latencies, errors, answers


def create_call(name: str, node: str | None) -> Callable[[ApiClient], requests.Response]:
    body: dict[str, Any] = {"name": name, "cpus": 1, "memory": MEMORY_MIB,
                            "disk": [{"size": 1}]}
    if node is not None:
        body["placed_on"] = node
    return lambda api: api.post("/instances", body)


def observed(fleet: SimulatedFleet) -> dict[str, InstanceObserved]:
    return {kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value)
            for kv in fleet.prefix(fleet.cloud.keys.observed_instances)}


def wait_all(fleet: SimulatedFleet, uuids: set[str], check: Callable[[InstanceObserved], bool],
             what: str, timeout: float) -> float:
    """Wait until every instance's observed record passes ``check``; seconds taken."""
    started = time.monotonic()
    while True:
        seen = observed(fleet)
        waiting = [u for u in uuids if u not in seen or not check(seen[u])]
        if not waiting:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{len(waiting)} instances never became {what}")
        time.sleep(1.0)


def running(o: InstanceObserved) -> bool:
    return o.state == "created" and o.power_state == "on"


class Scale:
    def __init__(self, fleet: SimulatedFleet, args: argparse.Namespace):
        self.fleet = fleet
        self.args = args
        self.keys = fleet.cloud.keys
        self.clients = Clients(fleet, args.concurrency)
        self.figures = Figures()
        self.uuids: list[str] = []
        self.revisions: dict[str, int] = {}

    # --- 1. creates ---------------------------------------------------------------

    def create(self) -> None:
        args, figures, fleet = self.args, self.figures, self.fleet
        per_node = max(1, args.instances // args.nodes)
        first = node_name(0)
        figures.note_load("start")
        nodes = self.fleet.cloud.api().get("/nodes").json()
        figures.add("nodes registered (the API's node records)",
                    {"simulated": sum(1 for n in nodes if n.get("simulated")),
                     "real": sum(1 for n in nodes if not n.get("simulated"))},
                    "all simulated", met=all(n.get("simulated") for n in nodes))
        portal_idle = fleet.rss_mib(fleet.cloud.portal)
        agent_idle = fleet.rss_mib(fleet.agents[first])
        start_revision = fleet.revision()
        db_before = fleet.db_size()

        latencies, errors, answers = self.clients.run(
            create_call(f"s-{i:05d}", first) for i in range(per_node))
        self.uuids = [r.json()["uuid"] for r in answers if r.status_code == 200]
        wait_all(fleet, set(self.uuids), running, "running", timeout=600)
        time.sleep(2)
        agent_small = fleet.rss_mib(fleet.agents[first])
        figures.note_load(f"{per_node} instances on {first}")

        rest_latencies, rest_errors, rest = self.clients.run(
            create_call(f"s-{i:05d}", None) for i in range(per_node, args.instances))
        latencies += rest_latencies
        errors += rest_errors
        self.uuids += [r.json()["uuid"] for r in rest if r.status_code == 200]
        created = time.monotonic()
        wait_all(fleet, set(self.uuids), running, "running", timeout=3600)
        all_running = time.monotonic() - created
        self.revisions["create"] = fleet.revision() - start_revision
        figures.note_load(f"{len(self.uuids)} instances running")

        figures.add(f"API create, {args.concurrency} concurrent clients, {args.instances} "
                    f"instances on {args.nodes} nodes (s)", spread(latencies),
                    "p99 < 1 s, no error",
                    met=bool(latencies) and percentile(latencies, 0.99) < 1 and not errors,
                    errors=len(errors), first_errors=errors[:3])
        mean, p50, p99 = self.placement_times()
        figures.add(f"placement decision with {args.nodes} nodes (s; p50 and p99 are the "
                    "histogram's bucket bounds)", {"mean": mean, "p50 <=": p50, "p99 <=": p99},
                    "< 20 ms each", met=p99 <= 0.02)
        figures.add("all running after the last create returned (s)", round(all_running, 1))
        figures.add("create -> running, each instance (s)", spread(self.to_running()),
                    "KubeVirt: p95 <= 60 s (100 VMs 100 ms apart)")
        hosts = self.placement_counts()
        figures.add("instances per node (min / max)", (min(hosts.values()), max(hosts.values())))
        agent_large = fleet.rss_mib(fleet.agents[first])
        held = hosts.get(first, 0)
        growth = (agent_large - agent_small) / agent_small
        figures.add(f"agent memory, its node holding {per_node} -> {held} instances, cloud "
                    f"{per_node} vs {len(self.uuids)} (MiB)",
                    {"idle": round(agent_idle, 1), "small cloud": round(agent_small, 1),
                     "large cloud": round(agent_large, 1), "growth": f"{growth:+.1%}"},
                    "within 10 %", met=abs(growth) <= 0.10)
        agents = [fleet.rss_mib(p) for p in fleet.agents.values()]
        figures.add("every agent's memory (MiB)",
                    {"min": round(min(agents), 1), "median": round(statistics.median(agents), 1),
                     "max": round(max(agents), 1), "total": round(sum(agents))})
        portal = fleet.rss_mib(fleet.cloud.portal)
        figures.add(f"portal memory, 0 -> {len(self.uuids)} instances (MiB)",
                    {"idle": round(portal_idle, 1), "loaded": round(portal, 1),
                     "KiB per instance": round((portal - portal_idle) * 1024
                                               / max(len(self.uuids), 1), 1)},
                    "stated, and linear at most")
        db_after = fleet.db_size()
        figures.add(f"etcd database, {len(self.uuids)} instances (MiB)",
                    {"before": round(db_before / 2**20, 1), "after": round(db_after / 2**20, 1),
                     "per 10,000 instances": round((db_after - db_before) / 2**20 * 10_000
                                                   / max(len(self.uuids), 1), 1)})

    def placement_times(self) -> tuple[float, float, float]:
        """From the portal's /metrics: (mean, p50 bound, p99 bound) of its
        placement decisions."""
        text = requests.get(f"{self.fleet.cloud.url}/metrics", timeout=30,
                            headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
        name = "sfcloud_portal_placement_seconds"
        buckets: list[tuple[float, float]] = []
        total = count = 0.0
        for line in text.splitlines():
            if line.startswith(f"{name}_bucket"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
            elif line.startswith(f"{name}_sum"):
                total = float(line.rsplit(" ", 1)[1])
            elif line.startswith(f"{name}_count"):
                count = float(line.rsplit(" ", 1)[1])

        def bound(fraction: float) -> float:
            return next(le for le, seen in sorted(buckets) if seen >= fraction * count)

        return round(total / max(count, 1), 4), bound(0.5), bound(0.99)

    def to_running(self) -> list[float]:
        specs = {kv.key.rsplit("/", 1)[-1]: InstanceSpec.from_json(kv.value)
                 for kv in self.fleet.prefix(self.keys.instances)}
        seen = observed(self.fleet)
        return [seen[u].updated_at - specs[u].created_at for u in self.uuids
                if u in specs and u in seen and running(seen[u])]

    def placement_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.fleet.agents, 0)
        for kv in self.fleet.prefix(self.keys.instances):
            node = InstanceSpec.from_json(kv.value).node
            counts[node] = counts.get(node, 0) + 1
        return counts

    # --- 2. reads and the live list -------------------------------------------------

    def reads(self) -> None:
        figures, count = self.figures, len(self.uuids)
        api = self.fleet.cloud.api()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            response = api.get("/instances")
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:300]
            assert len(response.json()) == count, f"the API listed {len(response.json())}"
        goal = 0.1 if count <= 1000 else 1.0
        figures.add(f"GET /api/instances, {count} instances (s)", spread(times),
                    f"p50 < {goal:g} s", met=statistics.median(times) < goal)
        session = self.admin()
        page_times = []
        for _ in range(10):
            started = time.perf_counter()
            response = session.get(f"{self.fleet.cloud.url}/instances/", timeout=60)
            page_times.append(time.perf_counter() - started)
            assert response.status_code == 200
        figures.add(f"portal instance list page, first page of {count} (s, as the client "
                    "on loopback sees it)", spread(page_times), "< 200 ms",
                    met=statistics.median(page_times) < 0.2)

    def admin(self) -> requests.Session:
        cloud = self.fleet.cloud
        return web_login(cloud.url, "admin", cloud.admin_password)

    def fanout(self) -> None:
        figures, args = self.figures, self.args
        newest = max(self.fleet.prefix(self.keys.instances),
                     key=lambda kv: InstanceSpec.from_json(kv.value).created_at)
        uuid = newest.key.rsplit("/", 1)[-1]
        rounds = asyncio.run(self._fanout(uuid, self.admin()))
        delays = [delay for one in rounds for delay in one]
        figures.add(f"a row's state change -> {args.browsers} live lists (s)", spread(delays),
                    "p95 < 100 ms", met=bool(delays) and percentile(delays, 0.95) < 0.1,
                    slowest_per_round=[round(max(one), 3) for one in rounds if one])

    async def _fanout(self, uuid: str, session: requests.Session) -> list[list[float]]:
        """Each round's delays, one per live list."""
        cloud = self.fleet.cloud
        cookies = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        url = cloud.url.replace("http://", "ws://") + "/ws/instances/"
        sockets = [await websockets.connect(url, origin=cloud.url,  # type: ignore[arg-type]
                                            additional_headers={"Cookie": cookies},
                                            max_size=None, open_timeout=60)
                   for _ in range(self.args.browsers)]
        rounds: list[list[float]] = []
        try:
            # Every list has its page (fifty pages rendered at once take a
            # while): the rounds measure a change, not the connections.
            await asyncio.gather(*(asyncio.wait_for(ws.recv(), 120) for ws in sockets))
            await asyncio.gather(*(_drain(ws) for ws in sockets))
            etcd = cloud.new_etcd()
            try:
                for round_ in range(FANOUT_ROUNDS):
                    verb, state = ("poweroff", "off") if round_ % 2 == 0 else ("poweron", "on")
                    changed = asyncio.create_task(self._observed_change(etcd, uuid, state))
                    arrivals = [asyncio.create_task(_row_arrives(ws, uuid, state))
                                for ws in sockets]
                    await asyncio.sleep(0.2)  # the watch is in place
                    response = await asyncio.to_thread(cloud.api().post,
                                                       f"/instances/{uuid}/{verb}")
                    assert response.status_code == 200, response.text
                    at = await asyncio.wait_for(changed, 60)
                    rounds.append([arrival - at for arrival in await asyncio.gather(*arrivals)])
                    await asyncio.gather(*(_drain(ws) for ws in sockets))
            finally:
                await etcd.close()
        finally:
            for ws in sockets:
                await ws.close()
        return rounds

    async def _observed_change(self, etcd: Etcd, uuid: str, state: str) -> float:
        """When the node reported ``state``: the time its agent wrote in the
        record (this machine's clock, as the browsers' arrival times are)."""
        key = self.keys.observed_instance(uuid)
        start = await etcd.revision() + 1
        async for batch in etcd.watch_prefix(key, start):
            for event in batch:
                if event.kind != "put":
                    continue
                record = InstanceObserved.from_json(event.kv.value)
                if record.power_state == state:
                    return record.updated_at
        raise RuntimeError("the watch ended")

    # --- 3. power actions and deletes -------------------------------------------------

    def power_and_delete(self) -> None:
        figures, fleet, args = self.figures, self.fleet, self.args
        sample = self.uuids[:args.power_sample]
        for verb, state in (("poweroff", "off"), ("poweron", "on")):
            start_revision = fleet.revision()
            latencies, errors, _ = self.clients.run(
                (lambda api, u=u, v=verb: api.post(f"/instances/{u}/{v}")) for u in sample)
            took = wait_all(fleet, set(sample),
                            lambda o, s=state: o.power_state == s and o.state == "created",
                            state, timeout=1800)
            self.revisions[verb] = fleet.revision() - start_revision
            figures.add(f"API {verb}, {len(sample)} instances (s)", spread(latencies),
                        "stated", errors=len(errors), first_errors=errors[:3],
                        all_applied_after=round(took, 1))
        figures.note_load("power actions done")
        start_revision = fleet.revision()
        latencies, errors, _ = self.clients.run(
            (lambda api, u=u: api.delete(f"/instances/{u}")) for u in self.uuids)
        took = wait_all(fleet, set(self.uuids), lambda o: o.state == "deleted", "deleted",
                        timeout=3600)
        self.revisions["delete"] = fleet.revision() - start_revision
        figures.add(f"API delete, {len(self.uuids)} instances (s)", spread(latencies), "stated",
                    errors=len(errors), first_errors=errors[:3],
                    all_gone_after=round(took, 1))
        count, powered = len(self.uuids), max(len(sample), 1)
        per = (self.revisions["create"] / count + self.revisions["poweroff"] / powered
               + self.revisions["poweron"] / powered + self.revisions["delete"] / count)
        figures.add("etcd revisions per instance lifecycle (create, power off, on, delete)",
                    {"create": round(self.revisions["create"] / count, 2),
                     "power off": round(self.revisions["poweroff"] / powered, 2),
                     "power on": round(self.revisions["poweron"] / powered, 2),
                     "delete": round(self.revisions["delete"] / count, 2),
                     "total": round(per, 2)}, "<= 15", met=per <= 15)
        figures.note_load("deleted")


async def _drain(ws: Any, quiet: float = 0.5) -> None:
    """Read until the socket has been quiet for ``quiet`` seconds."""
    while True:
        try:
            await asyncio.wait_for(ws.recv(), quiet)
        except TimeoutError:
            return


async def _row_arrives(ws: Any, uuid: str, power: str) -> float:
    """When the row of ``uuid`` arrives showing the node's report of ``power``
    (the row also changes before, when the API records the wish)."""
    row = f'id="instance-{uuid}"'
    while True:
        message = await asyncio.wait_for(ws.recv(), 60)
        if row in message and f'data-power="{power}"' in message.split(row, 1)[1][:400]:
            return time.time()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--browsers", type=int, default=50)
    parser.add_argument("--power-sample", type=int, default=1000,
                        help="how many instances are powered off and on again")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    print(f"scale: {args.nodes} simulated nodes, {args.instances} instances, "
          f"{args.concurrency} clients, {args.browsers} browsers; {os.cpu_count()} CPUs",
          flush=True)
    started = time.monotonic()
    with simulated_cloud(args.nodes) as fleet:
        scale = Scale(fleet, args)
        scale.figures.note_load(f"{args.nodes} agents registered after "
                                f"{time.monotonic() - started:.0f} s")
        scale.create()
        scale.reads()
        scale.fanout()
        scale.power_and_delete()
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"args": vars(args), "figures": scale.figures.rows,
                       "load": scale.figures.load,
                       "seconds": round(time.monotonic() - started)}, out, indent=1)


if __name__ == "__main__":
    main()
