"""Who may read the cloud's files: its own processes, and no local user.

The state directory holds the portal's database (sessions, password hashes,
token digests), guests' disks and config drives (user data, keys), snapshots
and every secret. Every sfcloud process runs with umask 077, so what it
makes is its own. Two other programs must open some of these files by name,
and get them without the world getting them too:

- QEMU (as libvirt-qemu): guests' disks and config drives and the cached
  images under them. libvirt gives a domain's files to that user while the
  domain runs (its ``dynamic_ownership``, on by default, chowns them and
  gives them back after), so the files stay 0600; the directories above
  them are 0711, which lets a program through to a file it can name but
  lets nobody list them.
- dnsmasq: each network's hosts files, owned by the user dnsmasq runs as
  (``nodeagent.net.dnsmasq``), 0600, in 0711 directories.

Anything written before these rules is tightened when the program that
owns it starts (``tighten``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_DIR = 0o700
# Lets a program reach a file it can name (QEMU, dnsmasq), lists nothing.
PASSAGE_DIR = 0o711


def private_umask() -> None:
    """What this process makes is its own (call first thing at start)."""
    os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


def passage_dir(path: Path) -> Path:
    """A directory others pass through to a file they are given, never list."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PASSAGE_DIR)  # noqa: S103 - traverse only, no listing
    return path


def tighten(root: Path) -> None:
    """Take from group and others whatever they may read or write under
    ``root`` (files made with a looser umask, by an older version): files
    keep their owner's bits only, directories at most pass-through.
    Symbolic links are left alone, and nothing is followed out of ``root``."""
    if not root.exists():
        return
    for directory, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            _tighten_one(Path(directory) / name)
    _tighten_one(root)


def _tighten_one(path: Path) -> None:
    try:
        details = os.lstat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(details.st_mode)
    if stat.S_ISDIR(details.st_mode):
        wanted = mode & ~0o066  # others and group keep at most "pass through"
    elif stat.S_ISREG(details.st_mode):
        wanted = mode & ~0o077
    else:
        return  # sockets, fifos, links: whoever made them chose
    if wanted != mode:
        try:
            os.chmod(path, wanted)
        except PermissionError:
            pass  # another user's file: its owner's process tightens it
