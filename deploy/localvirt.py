"""Start libvirtd and virtlogd when nothing runs them (machines without an
init system: containers, CI, a fresh VM). Used by ``make run`` and the tests.

A libvirtd someone else runs (an init system, an administrator) is used as
it is and never stopped. One that sfcloud started is shared: ``make run``
and test sessions may overlap, so each registers as a user while it needs
libvirtd, and whichever leaves last stops what sfcloud started, not the
first to leave.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from nodeagent import kvmdevice

LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")
# Who uses a libvirtd that sfcloud started: one file per process, named by
# its pid; "started" lists the pids of the daemons sfcloud started.
USERS_DIR = Path("/run/sfcloud/libvirt-users")


def socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not gone within ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _alive(pid: int, name: str | None = None) -> bool:
    """Whether ``pid`` runs (and, given a name, is that program: pids are reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) state ...": a zombie has finished, only its parent hasn't reaped it.
    comm, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
    return state != "Z" and (name is None or comm == name)


def _stop_pid(pid: int, name: str, timeout: float = 15.0) -> None:
    """SIGTERM a daemon another process may have started, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _alive(pid, name):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while _alive(pid, name) and time.monotonic() < deadline:
            time.sleep(0.1)


class LocalLibvirt:
    def __init__(self, log_dir: Path, users_dir: Path = USERS_DIR):
        self.log_dir = log_dir
        self.users_dir = users_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self._me = users_dir / str(os.getpid())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.users_dir.mkdir(parents=True, exist_ok=True)
        with open(self.users_dir / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _started_file(self) -> Path:
        return self.users_dir / "started"

    def ensure(self, timeout: float = 30.0) -> None:
        # Before any define: a root-only /dev/kvm makes every one take ~40 s.
        kvm = kvmdevice.ensure_access()
        if kvm.changed or not kvm.ok:
            print(f"sfcloud: {kvm.message}", flush=True)
        with self._locked():
            self._me.touch()
            for name, sock in (("virtlogd", VIRTLOGD_SOCKET), ("libvirtd", LIBVIRT_SOCKET)):
                if socket_answers(sock):
                    continue
                self._start(name, sock, timeout)
                with open(self._started_file(), "a") as started:
                    started.write(f"{self.started[-1].pid} {name}\n")

    def _start(self, name: str, sock: Path, timeout: float) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.started.append(subprocess.Popen(
                [name], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            ))
        deadline = time.monotonic() + timeout
        while not socket_answers(sock):
            if self.started[-1].poll() is not None or time.monotonic() > deadline:
                log_text = (self.log_dir / f"{name}.log").read_text(errors="replace")
                raise RuntimeError(f"{name} did not start:\n{log_text[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Leave; the last user out stops the daemons sfcloud started."""
        with self._locked():
            self._me.unlink(missing_ok=True)
            others = [path for path in self.users_dir.iterdir()
                      if path.name.isdigit() and _alive(int(path.name))]
            for path in self.users_dir.iterdir():  # users that died without leaving
                if path.name.isdigit() and path not in others:
                    path.unlink(missing_ok=True)
            if not others and self._started_file().exists():
                lines = self._started_file().read_text().split("\n")
                for line in reversed([line.split() for line in lines if line.strip()]):
                    _stop_pid(int(line[0]), line[1])
                self._started_file().unlink()
        for process in self.started:
            # Ours: reap it (it was stopped above, or lives on for the others).
            if process.poll() is not None:
                process.wait()
        self.started.clear()
