"""A release's files carry the modes git keeps, not the build machine's umask."""

from __future__ import annotations

import tarfile
from pathlib import Path

from deploy.release import _pack


def test_packed_files_are_readable_whatever_the_working_tree_made_them(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "portal" / "migrations").mkdir(parents=True)
    private = source / "portal" / "migrations" / "0009_new.py"
    private.write_text("# made under umask 077\n")
    private.chmod(0o600)
    script = source / "install.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o700)
    (source / "portal").chmod(0o700)
    names = ["portal", "portal/migrations", "portal/migrations/0009_new.py", "install.sh"]
    tarball = tmp_path / "release.tar.gz"

    _pack(source, names, "r1", tarball)

    with tarfile.open(tarball) as tar:
        modes = {member.name: member.mode for member in tar.getmembers()}
        owners = {(member.uid, member.gid) for member in tar.getmembers()}
    assert modes == {"portal": 0o755, "portal/migrations": 0o755,
                     "portal/migrations/0009_new.py": 0o644, "install.sh": 0o755,
                     "RELEASE": 0o644}
    assert owners == {(0, 0)}
