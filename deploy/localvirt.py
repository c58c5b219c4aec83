"""Start libvirtd and virtlogd when nothing runs them (machines without an
init system: containers, CI, a fresh VM). Used by ``make run`` and the tests.

Only what this process started is stopped again; a libvirtd someone else
runs is used as it is.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

LIBVIRT_SOCKET = Path("/run/libvirt/libvirt-sock")
VIRTLOGD_SOCKET = Path("/run/libvirt/virtlogd-sock")


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


class LocalLibvirt:
    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []

    def ensure(self, timeout: float = 30.0) -> None:
        for name, sock in (("virtlogd", VIRTLOGD_SOCKET), ("libvirtd", LIBVIRT_SOCKET)):
            if socket_answers(sock):
                continue
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
        for process in reversed(self.started):
            stop_process(process)
        self.started.clear()
