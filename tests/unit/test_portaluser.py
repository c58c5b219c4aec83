"""`make run`'s portal user: its state, the secrets its group may read (the
cluster secret, its TLS key and certificates, nothing else of the PKI), and
the check that it can run the portal at all (else make run says why and
keeps it as root)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from deploy import portaluser

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")

NOBODY = pwd.getpwnam("nobody")


def _state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (state / "portal").mkdir(parents=True)
    (state / "portal" / "db.sqlite3").write_bytes(b"sessions")
    (state / "cluster.secret").write_text("s" * 48)
    (state / "cluster.secret").chmod(0o600)
    pki = state / "pki"
    pki.mkdir(mode=0o700)
    for name in ("ca.crt", "ca.crl", "ca.key", "portal.crt", "portal.key", "agent-n1.key"):
        (pki / name).write_text(name)
        (pki / name).chmod(0o600)
    os.chmod(tmp_path, 0o711)  # as a state directory's parent would be
    os.chmod(state, 0o711)
    return state


def test_the_portal_user_gets_its_state_and_its_groups_secrets(tmp_path: Path) -> None:
    state = _state(tmp_path)
    prepared = portaluser.prepare(state, "/usr/bin/python3", name="nobody",
                                  secrets=portaluser.readable_secrets(state, state / "pki"),
                                  env={"PATH": "/usr/bin:/bin"}, modules=("json",))
    assert prepared.user is not None and prepared.user.uid == NOBODY.pw_uid
    for path in (state / "portal", state / "portal" / "db.sqlite3"):
        assert path.stat().st_uid == NOBODY.pw_uid
    assert stat.S_IMODE((state / "portal").stat().st_mode) == 0o700
    # The revocation list too: the portal's listener checks agents' certificates against it.
    for lent in ("cluster.secret", "pki/portal.key", "pki/portal.crt", "pki/ca.crt",
                 "pki/ca.crl"):
        secret = (state / lent).stat()
        assert (secret.st_uid, secret.st_gid) == (0, NOBODY.pw_gid)
        assert stat.S_IMODE(secret.st_mode) == 0o640  # its group, never the world
    for kept in ("pki/ca.key", "pki/agent-n1.key"):  # the CA's and other parts' keys
        assert stat.S_IMODE((state / kept).stat().st_mode) == 0o600
        assert (state / kept).stat().st_gid == 0
    # Its group may reach the files it is lent, but not list the directory.
    assert stat.S_IMODE((state / "pki").stat().st_mode) == 0o711
    assert prepared.user.command(["x"])[:2] == ["setpriv", f"--reuid={NOBODY.pw_uid}"]


def test_a_user_that_cannot_run_the_portal_is_named_with_the_reason(tmp_path: Path) -> None:
    """This machine's Python lives under /root (pyenv), which other users
    can't enter: make run must say so rather than fail to start."""
    state = _state(tmp_path)
    prepared = portaluser.prepare(state, "/root/no-such-python", name="nobody",
                                  secrets=[], env={"PATH": "/usr/bin:/bin"})
    assert prepared.user is None
    assert "nobody" in prepared.why_not and "/root/no-such-python" in prepared.why_not


def test_the_user_is_made_as_a_system_user_without_a_login() -> None:
    argv = portaluser.useradd_argv("sfcloud")
    assert argv[0] == "useradd" and argv[-1] == "sfcloud"
    assert "--system" in argv and "/usr/sbin/nologin" in argv
