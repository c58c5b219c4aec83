"""The user ``make run``'s portal runs as: unprivileged, as
sfcloud-portal.service runs it (``User=sfcloud``).

The portal is the part strangers talk to; running it as root would hand a
flaw in it (or in Django, or uvicorn) the whole machine. ``prepare`` makes
the system user if missing, gives it the portal's own state (its database
and secret key, under ``<state>/portal``), and lets its group read the few
shared secrets the portal needs (the cluster secret; its TLS key and
certificates): group-readable by the portal's group only, never the world.
This is the one place that decides what the portal user may read.

The portal can only run as that user if the user can reach the code and the
Python that runs it: a checkout in /root (0700), or a Python under /root
(pyenv), can't be. Then ``prepare`` says why, and ``make run`` keeps the
portal as root with a warning rather than not starting at all.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cloudstate import privacy, tls
from cloudstate.settings import REPO_ROOT
from cloudstate.signing import SECRET_FILE

PORTAL_USER = "sfcloud"
# What the portal's processes must be able to import, as that user.
PROBED_MODULES = ("django", "uvicorn", "channels", "portal")
SECRET_MODE = 0o640  # the owner (root) and the portal's group


@dataclass(frozen=True)
class PortalUser:
    name: str
    uid: int
    gid: int

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run as this user, with its group only and no way back to root."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                "--no-new-privs", "--", *argv]


@dataclass(frozen=True)
class Prepared:
    user: PortalUser | None  # None: the portal must stay root
    why_not: str = ""


def readable_secrets(state_dir: Path, pki_dir: Path) -> list[Path]:
    """The files the portal reads that are root's: the cluster secret, and
    its TLS credentials (key, certificate, the CA's certificate and its
    revocation list, made root's alone under umask 077). Its group may read
    them, nobody else."""
    credentials = tls.portal(pki_dir)
    return [state_dir / SECRET_FILE, credentials.key, credentials.cert, credentials.ca,
            credentials.crl]


def useradd_argv(name: str) -> list[str]:
    return ["useradd", "--system", "--user-group", "--no-create-home",
            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name]


def ensure_user(name: str) -> PortalUser:
    """The system user ``name`` (and its group), made if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(useradd_argv(name), check=True, capture_output=True, text=True)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise RuntimeError(f"the portal's user {name} is root")
    return PortalUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def prepare(state_dir: Path, python: str, *, secrets: Iterable[Path], env: dict[str, str],
            name: str = PORTAL_USER, modules: tuple[str, ...] = PROBED_MODULES) -> Prepared:
    """Make ``name`` ready to run the portal on ``state_dir``, or say why it can't."""
    if os.geteuid() != 0:
        return Prepared(None, "make run is not running as root")
    user = ensure_user(name)
    portal_dir = privacy.private_dir(state_dir / "portal")
    for directory, _dirs, files in os.walk(portal_dir):
        for entry in [directory, *(os.path.join(directory, f) for f in files)]:
            os.chown(entry, user.uid, user.gid, follow_symlinks=False)
    for secret in secrets:
        if secret.exists():
            os.chown(secret, 0, user.gid)
            os.chmod(secret, SECRET_MODE)
            # The PKI directory is made 0700: let the user through to its
            # files, never list them.
            privacy.passage_dir(secret.parent)
    probe = subprocess.run(
        user.command([python, "-c", "import " + ", ".join(modules)]),
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)
    if probe.returncode != 0:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return Prepared(None, f"user {name} can't run {python} on {REPO_ROOT}"
                              f" ({lines[-1] if lines else f'exit {probe.returncode}'})")
    return Prepared(user)
