"""A libvirtd that sfcloud started is shared by overlapping users (make run,
test sessions): the last one to leave stops it, never an earlier one.
Daemons are stood in for by `sleep` processes; no libvirtd is touched."""

from __future__ import annotations

import subprocess
from pathlib import Path

from deploy.localvirt import LocalLibvirt, _alive


def _daemon() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def _user(users: Path, started_by: subprocess.Popen[bytes] | None = None) -> LocalLibvirt:
    """A user registered as ensure() registers one (with a pid of its own)."""
    local = LocalLibvirt(users / "logs", users_dir=users)
    users.mkdir(exist_ok=True)
    stand_in = subprocess.Popen(["sleep", "60"])
    local._me = users / str(stand_in.pid)
    local._me.touch()
    local.stand_in = stand_in  # type: ignore[attr-defined]
    if started_by is not None:
        with open(users / "started", "a") as started:
            started.write(f"{started_by.pid} sleep\n")
    return local


def test_the_last_user_out_stops_what_sfcloud_started(tmp_path: Path) -> None:
    users = tmp_path / "users"
    daemon = _daemon()
    try:
        first = _user(users, started_by=daemon)
        second = _user(users)
        first.stop()  # the one who started it leaves first: the other still needs it
        assert _alive(daemon.pid, "sleep")
        second.stop()
        daemon.wait(timeout=20)
        assert not (users / "started").exists()
    finally:
        daemon.kill()
        for local in (first, second):
            local.stand_in.kill()  # type: ignore[attr-defined]


def test_users_that_died_without_leaving_do_not_keep_it_running(tmp_path: Path) -> None:
    users = tmp_path / "users"
    daemon = _daemon()
    try:
        crashed = _user(users, started_by=daemon)
        crashed.stand_in.kill()  # type: ignore[attr-defined]
        crashed.stand_in.wait()  # type: ignore[attr-defined]
        last = _user(users)
        last.stop()
        daemon.wait(timeout=20)
        assert sorted(p.name for p in users.iterdir()) == ["lock"]
    finally:
        daemon.kill()
        last.stand_in.kill()  # type: ignore[attr-defined]


def test_a_daemon_sfcloud_did_not_start_is_never_stopped(tmp_path: Path) -> None:
    users = tmp_path / "users"
    someone_elses = _daemon()
    try:
        only = _user(users)
        only.stop()
        assert _alive(someone_elses.pid, "sleep")
    finally:
        someone_elses.kill()
        only.stand_in.kill()  # type: ignore[attr-defined]
