from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.events import EventLog, EventSpool, events_url


def test_spool_keeps_order_and_removes_only_what_was_acknowledged(tmp_path: Path) -> None:
    log = EventLog(EventSpool(tmp_path / "spool"))
    for n in range(5):
        log.emit("instance", "u-1", f"event {n}", duration=0.1234567)
    assert log.wakeup.is_set()
    pending = log.spool.pending(3)
    assert [event["message"] for _, event in pending] == ["event 0", "event 1", "event 2"]
    assert pending[0][1]["duration"] == 0.123
    log.spool.remove([pending[1][0]])
    assert [e["message"] for _, e in log.spool.pending(10)] == \
        ["event 0", "event 2", "event 3", "event 4"]
    # A new spool over the same directory (a restarted agent) sees the same.
    again = EventSpool(tmp_path / "spool")
    assert len(again) == 4


def test_unreadable_and_excess_events_are_dropped_not_blocking(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path / "spool", max_events=3)
    log = EventLog(spool)
    for n in range(5):
        log.emit("node", "n", f"e{n}")
    oldest = sorted((tmp_path / "spool").glob("*.json"))[0]
    assert [e["message"] for _, e in spool.pending(10)] == ["e2", "e3", "e4"]
    assert not oldest.exists()
    broken = sorted((tmp_path / "spool").glob("*.json"))[0]
    broken.write_text("{not json")
    assert [e["message"] for _, e in spool.pending(10)] == ["e3", "e4"]
    assert json.loads(sorted((tmp_path / "spool").glob("*.json"))[0].read_text())["kind"] == "node"


def test_half_written_events_from_a_crash_are_cleaned(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / ".123-abc.json.tmp").write_text("{")
    EventSpool(directory)
    assert not list(directory.iterdir())


@pytest.mark.parametrize("portal,url", [
    ("https://127.0.0.1:13002", "wss://127.0.0.1:13002/ws/agent/events/"),
    ("https://cloud.example.org/", "wss://cloud.example.org/ws/agent/events/"),
    ("https://example.org/sfcloud", "wss://example.org/sfcloud/ws/agent/events/"),
])
def test_events_url(portal: str, url: str) -> None:
    assert events_url(portal) == url


@pytest.mark.parametrize("portal", ["127.0.0.1:13000", "http://127.0.0.1:13000",
                                    "ws://127.0.0.1:13002"])
def test_events_url_needs_https(portal: str) -> None:
    with pytest.raises(ValueError, match="SFCLOUD_PORTAL_URL.*TLS only"):
        events_url(portal)
