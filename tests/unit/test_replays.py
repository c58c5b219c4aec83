"""The agent's memory of used grants: once each, until expiry, across
restarts, bounded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nodeagent.replays import ReplayGuard, ReplaysFull


def test_each_grant_once_even_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "used-grants"
    guard = ReplayGuard(path)
    assert guard.first_use("a", time.time() + 30)
    assert not guard.first_use("a", time.time() + 30)
    restarted = ReplayGuard(path)
    assert not restarted.first_use("a", time.time() + 30)
    assert restarted.first_use("b", time.time() + 30)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_expired_grants_are_forgotten_and_the_file_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "used-grants"
    guard = ReplayGuard(path)
    for number in range(5000):
        guard.first_use(f"old-{number}", time.time() - 1)  # expired already
    assert len(path.read_text().splitlines()) < 2100
    assert ReplayGuard(path).first_use("old-1", time.time() + 30)  # gone: expired anyway


def test_a_flood_is_refused_rather_than_forgotten(tmp_path: Path) -> None:
    guard = ReplayGuard(tmp_path / "used-grants", max_live=100)
    for number in range(100):
        assert guard.first_use(f"g{number}", time.time() + 30)
    with pytest.raises(ReplaysFull):
        guard.first_use("one-more", time.time() + 30)
    assert not guard.first_use("g5", time.time() + 30)


def test_a_damaged_file_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    path = tmp_path / "used-grants"
    path.write_text(f"{time.time() + 30:.3f} kept\ngarbage\n\n{time.time() + 30:.3f} also\n")
    guard = ReplayGuard(path)
    assert not guard.first_use("kept", time.time() + 30)
    assert not guard.first_use("also", time.time() + 30)
