"""The scheduler's accounting, kept by the live hub one change at a time,
always equals the same accounting done afresh over etcd's records."""

from __future__ import annotations

import asyncio

from portal.cloud import scheduler
from portal.live.hub import current_hub
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal


def _both(portal: InProcessPortal) -> tuple[dict, dict]:
    keys = portal.keys

    async def kept_by_hub() -> dict:
        await current_hub()
        return await scheduler.snapshot(keys)

    kept = {n: (load.cpus, load.memory_mib, load.disk_gb, sorted(load.instances),
             dict(load.tags))
            for n, load in portal.loop.run(kept_by_hub()).items()}

    async def afresh(etcd):  # type: ignore[no-untyped-def]
        nodes, _ = await etcd.get_prefix(keys.nodes)
        alive, _ = await etcd.get_prefix(keys.alive)
        specs, _ = await etcd.get_prefix(keys.instances)
        observed, _ = await etcd.get_prefix(keys.observed_instances)
        return scheduler.loads_from(nodes=nodes, alive=alive, specs=specs, observed=observed)

    fresh = {n: (load.cpus, load.memory_mib, load.disk_gb, sorted(load.instances),
             dict(load.tags))
             for n, load in portal.etcd_call(afresh).items()}
    return kept, fresh


def test_the_kept_accounting_follows_creates_and_deletes(portal: InProcessPortal,
                                                         agent: FakeAgent) -> None:
    api = portal.api()
    uuids = []
    for i, memory in enumerate((64, 128, 256)):
        made = api.post("/instances", {"name": f"acc-{i}", "cpus": 1, "memory": memory,
                                       "disk": [{"size": 2}],
                                       # Affinity counts instances per tag and node.
                                       "metadata": {"tags": ["web", *(["db"] * i)]}})
        assert made.status_code == 200, made.text
        uuids.append(made.json()["uuid"])
        agent.report_instance(uuids[-1])
    kept, fresh = _both(portal)
    assert kept == fresh and kept[agent.node][:3] == (3, 448, 6)
    assert kept[agent.node][4] == {"web": 3, "db": 2}
    # Deleted but not yet torn down: still held; torn down: given back.
    assert api.delete(f"/instances/{uuids[0]}").status_code == 200
    kept, fresh = _both(portal)
    assert kept == fresh and kept[agent.node][1] == 448
    agent.report_instance(uuids[0], state="deleted", power_state="off")
    kept, fresh = _both(portal)
    assert kept == fresh and kept[agent.node][:3] == (2, 384, 4)
    assert kept[agent.node][4] == {"web": 2, "db": 2}



def test_a_placement_does_not_give_the_event_loop_away(portal: InProcessPortal,
                                                        agent: FakeAgent) -> None:
    """Its decision runs in one step: under twenty concurrent creates, a
    placement that awaited anything waited its turn behind every other
    request, and its time in /metrics was theirs."""

    async def others_ran_meanwhile() -> bool:
        await current_hub()
        ran: list[bool] = []

        async def other() -> None:
            ran.append(True)

        task = asyncio.get_running_loop().create_task(other())
        loads = await scheduler.snapshot(portal.keys)
        scheduler.choose(scheduler.Demand(1, 64, 1), loads)
        meanwhile = bool(ran)
        await task
        return meanwhile

    assert portal.loop.run(others_ran_meanwhile()) is False
