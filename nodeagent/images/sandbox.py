"""Where qemu-img works on untrusted bytes: a directory of its own, as an
unprivileged user.

The agent runs as root; qemu-img parsing a hostile file should not. Each
download gets a work directory owned by the sandbox user (``nobody`` by
default, SFCLOUD_IMAGE_CHECK_USER), inside the agent's private ``.partial``
directory, which that user cannot enter. qemu-img runs as that user with no
supplementary groups and no new privileges, and reaches its files through a
directory descriptor the agent hands it (``/proc/self/fd/N/<name>``): so it
can read the files it is lent and write the files it makes, and nothing else
the agent owns, and an image that names /etc/shadow gets "permission denied"
even if something got past the format checks (``formats``).

What the agent lends stays the agent's: the sandbox user may read it (by
group), never change it, so a blob's bytes stay the bytes its sha512 was
taken of. What comes back is checked to be the same regular file (or, for a
file the sandbox made, a regular file of its own), never a link to another.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import stat
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
        self._lent: dict[str, tuple[int, int]] = {}  # name -> (device, inode)

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
        """Let the sandbox user read a file the agent put here (its group
        may read it; it stays the agent's, unchangeable by that user)."""
        fd = os.open(self.path(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            details = os.fstat(fd)
            self._lent[name] = (details.st_dev, details.st_ino)
            if self.confined:
                os.fchown(fd, 0, self._gid)
                os.fchmod(fd, 0o640)
        finally:
            os.close(fd)

    def take_back(self, name: str) -> Path:
        """A file of the sandbox (one lent to it, or one it made), the
        agent's alone again (0600), before it is checked and moved on.
        Anything but that very file (a lent one) or a regular file with
        one name (a made one) is refused: the sandbox user may have put a
        link to another file in its place."""
        path = self.path(name)
        lent = self._lent.pop(name, None)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise SandboxBroken(f"{name} is no longer a file of the sandbox") from exc
        try:
            details = os.fstat(fd)
            if lent is not None:
                honest = (details.st_dev, details.st_ino) == lent
            else:
                honest = stat.S_ISREG(details.st_mode) and details.st_nlink == 1
            if not honest:
                raise SandboxBroken(f"{name} was replaced in the sandbox")
            if self.confined:
                os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        return path

    def command(self, argv: list[str]) -> list[str]:
        if not self.confined:
            return argv
        return ["setpriv", f"--reuid={self._uid}", f"--regid={self._gid}", "--clear-groups",
                "--no-new-privs", "--", *argv]


class SandboxBroken(OSError):
    """What came back from the sandbox is not what went in (or was made
    there): treated as a failure to store the bytes."""


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
