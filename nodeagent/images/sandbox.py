"""Where qemu-img works on untrusted bytes: a directory of its own, as an
unprivileged user.

The agent runs as root; qemu-img parsing a hostile file should not. Each
download gets a work directory owned by the sandbox user (``nobody`` by
default, SFCLOUD_IMAGE_CHECK_USER), inside the agent's private ``.partial``
directory, which that user cannot enter. qemu-img runs as that user with no
supplementary groups and no new privileges, and reaches its files through a
directory descriptor the agent hands it (``/proc/self/fd/N/<name>``): so it
can read and write the files of its own download and nothing else the agent
owns, and an image that names /etc/shadow gets "permission denied" even if
something got past the format checks (``formats``).
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)


class Sandbox:
    """A work directory for one download, and the command prefix that runs
    a program there as the sandbox user."""

    def __init__(self, parent: Path, label: str, user: str):
        self.parent = Path(parent)
        self.dir = self.parent / f"{label}-{secrets.token_hex(4)}"
        self._user = user
        self._fd = -1
        self._uid, self._gid = _ids(user)

    def __enter__(self) -> Sandbox:
        self.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700)
        if self.confined:
            os.chown(self.dir, self._uid, self._gid)
        self._fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def confined(self) -> bool:
        """Whether programs run as the sandbox user (only root can switch)."""
        return os.geteuid() == 0 and self._uid != 0

    def path(self, name: str) -> Path:
        """A file of the sandbox, as the agent sees it."""
        return self.dir / name

    def inner(self, name: str) -> str:
        """The same file as a confined program reaches it."""
        return f"/proc/self/fd/{self._fd}/{name}"

    @property
    def pass_fds(self) -> tuple[int, ...]:
        return (self._fd,)

    def hand_over(self, name: str) -> None:
        """Let the sandbox user read (and replace) a file the agent put here."""
        if self.confined:
            os.chown(self.path(name), self._uid, self._gid)

    def take_back(self, name: str) -> Path:
        """A file made in the sandbox, the agent's alone again (before it is
        checked and moved into the cache)."""
        path = self.path(name)
        if self.confined:
            os.chown(path, 0, 0)
        return path

    def command(self, argv: list[str]) -> list[str]:
        if not self.confined:
            return argv
        return ["setpriv", f"--reuid={self._uid}", f"--regid={self._gid}", "--clear-groups",
                "--no-new-privs", "--", *argv]


def check_user(user: str) -> None:
    """Refuse at start a sandbox user that does not exist, or is root."""
    _ids(user)


def _ids(user: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(f"SFCLOUD_IMAGE_CHECK_USER: there is no user {user!r} "
                           "on this machine") from None
    if entry.pw_uid == 0:
        raise RuntimeError("SFCLOUD_IMAGE_CHECK_USER must not be root")
    return entry.pw_uid, entry.pw_gid
