"""The node's usage history: fixed size, consolidated as samples arrive, gaps
where nothing was sampled, kept across a restart, and the figures the
samples are made of."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import pytest

from cloudstate.usage import INSTANCE_METRICS, NODE_METRICS, TIERS, Tier, sparkline, tier_for
from cloudstate.validation import ValidationError
from nodeagent.usage.figures import guest_figures, node_figures, rate
from nodeagent.usage.guests import guest_counters
from nodeagent.usage.history import History, HistoryStore, file_size
from nodeagent.usage.host import HostCounters, HostReader

HOUR, DAY, WEEK = TIERS
T0 = 1_699_999_200  # a multiple of 3600


def test_a_file_has_its_fixed_size_from_the_start_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "a.usage"
    history = History(path, INSTANCE_METRICS)
    assert path.stat().st_size == file_size(len(INSTANCE_METRICS)) == 52_288
    for i in range(2000):  # more than a lap of the finest tier
        history.record(T0 + 10 * i, {"cpu": 0.5})
    history.close()
    assert path.stat().st_size == 52_288
    assert file_size(len(NODE_METRICS)) == 65_344


def test_each_tier_holds_the_mean_of_the_samples_in_each_slot(tmp_path: Path) -> None:
    history = History(tmp_path / "a.usage", ("cpu", "memory"))
    for i, cpu in enumerate([1.0, 2.0, 3.0, 6.0]):
        history.record(T0 + 10 * i + 0.01, {"cpu": cpu, "memory": 100.0})
    times, columns = history.series(HOUR, T0 + 35)
    assert len(times) == HOUR.slots and times[-1] == T0 + 30
    assert columns["cpu"][-4:] == [1.0, 2.0, 3.0, 6.0]
    assert columns["cpu"][0] is None  # never sampled: a gap
    times, columns = history.series(DAY, T0 + 35)
    assert times[-1] == T0 and columns["cpu"][-1] == 3.0 and columns["memory"][-1] == 100.0
    times, columns = history.series(WEEK, T0 + 35)
    assert times[-1] == T0 and columns["cpu"][-1] == 3.0


def test_a_missing_figure_is_left_out_of_the_mean_not_counted_as_zero(tmp_path: Path) -> None:
    history = History(tmp_path / "a.usage", ("cpu", "memory"))
    history.record(T0, {"cpu": None, "memory": 10.0})
    history.record(T0 + 60, {"cpu": 4.0, "memory": 30.0})
    _, columns = history.series(DAY, T0 + 61)
    assert columns["cpu"][-1] == 4.0 and columns["memory"][-1] == 20.0


def test_a_slot_from_an_earlier_lap_reads_as_a_gap(tmp_path: Path) -> None:
    history = History(tmp_path / "a.usage", ("cpu",))
    history.record(T0, {"cpu": 1.0})
    later = T0 + HOUR.span  # the same position in the ring, one lap on
    _, columns = history.series(HOUR, later)
    assert columns["cpu"] == [None] * HOUR.slots
    history.record(later, {"cpu": 2.0})
    _, columns = history.series(HOUR, later)
    assert columns["cpu"][-1] == 2.0 and columns["cpu"].count(None) == HOUR.slots - 1


def test_a_sample_taken_less_often_than_the_finest_step_fills_what_it_covers(
        tmp_path: Path) -> None:
    history = History(tmp_path / "a.usage", ("cpu",))
    history.record(T0 + 60.05, {"cpu": 0.25}, covers=60)
    _, columns = history.series(HOUR, T0 + 61)
    assert columns["cpu"][-7:] == [None, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]


def test_the_history_is_there_after_a_restart_and_remade_if_its_layout_changed(
        tmp_path: Path) -> None:
    path = tmp_path / "a.usage"
    history = History(path, ("cpu",))
    history.record(T0, {"cpu": 0.75})
    history.close()
    again = History(path, ("cpu",))
    assert again.series(HOUR, T0)[1]["cpu"][-1] == 0.75
    again.close()
    other = History(path, ("cpu", "memory"))  # another version's metrics
    assert other.series(HOUR, T0)[1]["cpu"][-1] is None
    assert path.stat().st_size == file_size(2)
    other.close()
    shorter = History(path, ("cpu", "memory"), tiers=(Tier("hour", 10, 6),))
    assert path.stat().st_size == file_size(2, (Tier("hour", 10, 6),))
    shorter.close()


def test_the_store_keeps_a_file_per_object_and_forgets_one(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "usage")
    uuid = "6f1c1bd2-6bd6-4ad1-9a3f-0d6c2b3c9a10"
    assert store.find(uuid, INSTANCE_METRICS) is None
    store.get(uuid, INSTANCE_METRICS).record(T0, {"cpu": 1.0})
    store.get("node", NODE_METRICS)
    assert sorted(store.keys()) == sorted([uuid, "node"])
    store.forget(uuid)
    assert list(store.keys()) == ["node"]
    with pytest.raises(ValueError):
        store.get("../../etc/passwd", INSTANCE_METRICS)
    (tmp_path / "usage" / "notes.usage").write_text("someone's file")
    assert list(store.keys()) == ["node"]  # not ours, not touched
    store.close()


def test_history_is_private_to_the_agent_even_where_an_older_version_left_it_open(
        tmp_path: Path) -> None:
    directory = tmp_path / "usage"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    uuid = "6f1c1bd2-6bd6-4ad1-9a3f-0d6c2b3c9a10"
    older = directory / f"{uuid}.usage"
    older.write_bytes(b"")
    older.chmod(0o644)
    store = HistoryStore(directory)
    store.get(uuid, INSTANCE_METRICS)
    store.get("node", NODE_METRICS)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    store.close()


def test_ranges_name_their_tier() -> None:
    assert tier_for("day") is DAY
    with pytest.raises(ValidationError, match="range: must be one of hour, day, week"):
        tier_for("month")


def test_a_sparkline_is_equal_runs_averaged_gaps_kept() -> None:
    assert sparkline([1.0, 3.0, None, None, 5.0, 7.0], points=3) == [2.0, None, 6.0]
    assert sparkline([1.0, 2.0], points=60) == [1.0, 2.0]
    assert len(sparkline([0.5] * 360)) == 60


# --- figures ---------------------------------------------------------------------------


def test_a_counter_going_backwards_gives_no_figure() -> None:
    assert rate(150, 100, 10) == 5.0
    assert rate(50, 100, 10) is None  # restarted
    assert rate(50, None, 10) is None  # first reading
    assert rate(50, 40, 0) is None


def _host(**changes: float) -> HostCounters:
    base = {"cpus": 2, "cpu_busy": 100.0, "memory_total": 8 << 30, "memory_available": 6 << 30,
            "load": (0.5, 0.4, 0.3), "disk_read": 1000, "disk_written": 2000,
            "net_received": 3000, "net_sent": 4000}
    return HostCounters(**{**base, **changes})  # type: ignore[arg-type]


def test_node_figures_are_rates_and_levels() -> None:
    figures = node_figures(_host(cpu_busy=115.0, disk_read=11000),
                           _host(), 10.0, guests=3)
    assert figures == {"cpu": 1.5, "memory": float(2 << 30), "load": 0.5, "disk_read": 1000.0,
                       "disk_write": 0.0, "net_rx": 0.0, "net_tx": 0.0, "guests": 3.0}
    first = node_figures(_host(), None, 0.0, guests=0)
    assert first["cpu"] is None and first["memory"] == float(2 << 30)


LIBVIRT_STATS = {  # as getAllDomainStats gives them (trimmed)
    "state.state": 1, "cpu.time": 3_803_299_000, "balloon.current": 131072,
    "balloon.maximum": 131072, "balloon.rss": 234656, "vcpu.current": 1,
    "net.count": 1, "net.0.rx.bytes": 500, "net.0.tx.bytes": 700,
    "block.count": 2, "block.0.rd.bytes": 16381440, "block.0.wr.bytes": 4096,
    "block.1.rd.bytes": 114688, "block.1.wr.bytes": 0,
}


def test_a_guests_counters_come_from_libvirts_bulk_statistics() -> None:
    counters = guest_counters("u", LIBVIRT_STATS)
    assert counters.cpu == pytest.approx(3.803299)
    assert counters.vcpus == 1
    assert counters.memory_resident == 234656 * 1024
    assert counters.memory_max == 131072 * 1024
    assert (counters.disk_read, counters.disk_written) == (16381440 + 114688, 4096)
    assert (counters.net_received, counters.net_sent) == (500, 700)
    later = guest_counters("u", {**LIBVIRT_STATS, "cpu.time": 3_803_299_000 + 9_500_000_000})
    figures = guest_figures(later, counters, 10.0)
    assert figures["cpu"] == pytest.approx(0.95)
    assert figures["memory"] == 234656 * 1024
    assert figures["disk_read"] == 0.0


def test_the_host_reader_counts_physical_disks_and_interfaces_only(tmp_path: Path) -> None:
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    (proc / "net").mkdir(parents=True)
    (proc / "stat").write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n")
    (proc / "meminfo").write_text("MemTotal:  1000 kB\nMemFree: 100 kB\nMemAvailable:  400 kB\n")
    (proc / "loadavg").write_text("0.50 0.25 0.10 1/100 4242\n")
    (proc / "diskstats").write_text(
        " 254 0 vda 10 0 8 5 20 0 16 7 0 0 0\n"
        " 254 1 vda1 10 0 8 5 20 0 16 7 0 0 0\n"
        "   7 0 loop0 1 0 1000 0 0 0 0 0 0 0 0\n")
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
        "  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
        "    lo: 5000 50 0 0 0 0 0 0 5000 50 0 0 0 0 0 0\n"
        "sfbr1: 7000 70 0 0 0 0 0 0 7000 70 0 0 0 0 0 0\n")
    (sys / "block" / "vda" / "device").mkdir(parents=True)
    (sys / "block" / "loop0").mkdir(parents=True)
    (sys / "class" / "net" / "eth0" / "device").mkdir(parents=True)
    (sys / "class" / "net" / "lo").mkdir(parents=True)
    reader = HostReader(proc, sys)
    counters = reader.read()
    ticks = reader._ticks
    assert counters.cpu_busy == pytest.approx(150 / ticks)
    assert (counters.memory_total, counters.memory_available) == (1000 * 1024, 400 * 1024)
    assert counters.memory_used == 600 * 1024
    assert counters.load == (0.5, 0.25, 0.1)
    assert (counters.disk_read, counters.disk_written) == (8 * 512, 16 * 512)
    assert (counters.net_received, counters.net_sent) == (1000, 2000)
    assert math.isfinite(counters.cpu_busy)


def test_the_host_reader_reads_this_machine() -> None:
    counters = HostReader().read()
    assert counters.cpus >= 1 and counters.memory_total > counters.memory_available > 0
    assert counters.cpu_busy > 0


def test_what_libvirt_left_out_is_no_figure_not_zero() -> None:
    busy = {k: v for k, v in LIBVIRT_STATS.items() if not k.startswith("block.")}
    before = guest_counters("u", LIBVIRT_STATS)
    left_out = guest_counters("u", busy)
    assert left_out.disk_read is None and left_out.cpu == before.cpu
    # Neither a drop to nothing now nor a spike from nothing at the next sample.
    assert guest_figures(left_out, before, 10.0)["disk_read"] is None
    assert guest_figures(before, left_out, 10.0)["disk_read"] is None
    assert guest_figures(guest_counters("u", {}), None, 10.0)["memory"] is None
