"""Running the deploy's Ansible playbooks (deploy/ansible) from Python.

ansible-playbook comes from the same Python environment as sfcloud-deploy
(``pip install 'sfcloud[deploy]'``: ansible-core, pinned), never from the
system. Its home, temporary files and SSH control sockets live in the deploy
directory, its output goes to ``logs/`` there (and to the terminal with
``--verbose``), and the play recap is read back so that callers know what
changed on which host.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from deploy.deploydir import DeployDir

ANSIBLE_DIR = Path(__file__).resolve().parent / "ansible"
_RECAP = re.compile(r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
                    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)")


class PlaybookFailed(Exception):
    """A play failed; the message names the hosts and where the log is."""


@dataclass(frozen=True)
class HostResult:
    ok: int
    changed: int
    unreachable: int
    failed: int


@dataclass(frozen=True)
class RunResult:
    playbook: str
    hosts: dict[str, HostResult]
    seconds: float
    log: Path

    @property
    def changed(self) -> int:
        return sum(host.changed for host in self.hosts.values())


def ansible_playbook() -> str:
    """The ansible-playbook of this Python environment."""
    found = Path(sys.executable).with_name("ansible-playbook")
    if not found.exists():
        raise PlaybookFailed("ansible-playbook is not installed in this environment: "
                             "pip install 'sfcloud[deploy]' (ansible-core)")
    return str(found)


def environment(deploy_dir: DeployDir) -> dict[str, str]:
    home = deploy_dir.ansible_home
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        "PYTHONUNBUFFERED": "1",
    }


def run(deploy_dir: DeployDir, playbook: str, *, limit: Sequence[str] = (),
        extra_vars: dict[str, str] | None = None, verbose: bool = False,
        say: Callable[[str], object] = print) -> RunResult:
    """Run ``playbook`` (a file in deploy/ansible) on the inventory of the
    deploy directory; raise PlaybookFailed if any host failed."""
    argv = [ansible_playbook(), "-i", str(deploy_dir.inventory), str(ANSIBLE_DIR / playbook)]
    if limit:
        argv += ["--limit", ",".join(limit)]
    for name, value in (extra_vars or {}).items():
        argv += ["-e", f"{name}={value}"]
    deploy_dir.logs.mkdir(parents=True, exist_ok=True)
    log_path = deploy_dir.logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(playbook).stem}.log"
    started = time.monotonic()
    recap: dict[str, HostResult] = {}
    in_recap = False
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, cwd=ANSIBLE_DIR,
                                   env=environment(deploy_dir))
        assert process.stdout is not None
        for line in process.stdout:
            log.write(f"[{time.monotonic() - started:6.1f}s] {line}")
            log.flush()
            if verbose:
                say(line.rstrip())
            if line.startswith("PLAY RECAP"):
                in_recap = True
            elif in_recap and (found := _RECAP.match(line)):
                recap[found["host"]] = HostResult(
                    int(found["ok"]), int(found["changed"]), int(found["unreachable"]),
                    int(found["failed"]))
        code = process.wait()
    result = RunResult(playbook, recap, time.monotonic() - started, log_path)
    broken = sorted(h for h, r in recap.items() if r.failed or r.unreachable)
    if code != 0 or broken:
        raise PlaybookFailed(
            f"{playbook} failed{' on ' + ', '.join(broken) if broken else ''} "
            f"(exit {code}); what happened: {log_path}\n{_failures(log_path)}")
    return result


def _failures(log_path: Path, lines: int = 25) -> str:
    """The lines of the log that say what failed."""
    text = log_path.read_text(errors="replace").splitlines()
    picked = [i for i, line in enumerate(text)
              if line.startswith(("fatal:", "failed:", "ERROR!", "[ERROR]"))
              or "UNREACHABLE" in line]
    out: list[str] = []
    for index in picked[:5]:
        out += text[index:index + 8]
    return "\n".join(out[:lines] or text[-lines:])
