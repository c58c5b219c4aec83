from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloudstate import signing
from cloudstate.signing import BadSignature

SECRET = b"x" * 40


def test_round_trip() -> None:
    token = signing.sign(SECRET, "console", {"instance": "u1"}, ttl=30)
    assert signing.verify(SECRET, "console", token)["instance"] == "u1"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],
    lambda t: "e30" + t[3:],
    lambda t: t.split(".")[0],
    lambda t: "",
    lambda t: "not.a.token",
])
def test_tampering_is_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    token = signing.sign(SECRET, "console", {"instance": "u1"}, ttl=30)
    with pytest.raises(BadSignature):
        signing.verify(SECRET, "console", mangle(token))


def test_purpose_other_secret_and_expiry_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    token = signing.sign(SECRET, "console", {}, ttl=30)
    with pytest.raises(BadSignature):
        signing.verify(SECRET, "events", token)
    with pytest.raises(BadSignature):
        signing.verify(b"y" * 40, "console", token)
    short = signing.sign(SECRET, "console", {}, ttl=1)
    monkeypatch.setattr(time, "time", lambda: 10**12)
    with pytest.raises(BadSignature, match="expired"):
        signing.verify(SECRET, "console", short)


def test_secret_file_is_created_once_and_private(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFCLOUD_CLUSTER_SECRET", raising=False)
    monkeypatch.delenv("SFCLOUD_CLUSTER_SECRET_FILE", raising=False)
    with pytest.raises(RuntimeError, match="no cluster secret"):
        signing.load_secret(tmp_path)
    first = signing.load_secret(tmp_path, create=True)
    assert signing.load_secret(tmp_path) == first
    assert (tmp_path / signing.SECRET_FILE).stat().st_mode & 0o777 == 0o600


def test_the_setting_or_its_file_wins_over_the_state_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signing.load_secret(tmp_path, create=True)
    monkeypatch.setenv("SFCLOUD_CLUSTER_SECRET", "s" * 32)
    assert signing.load_secret(tmp_path) == b"s" * 32
    monkeypatch.delenv("SFCLOUD_CLUSTER_SECRET")
    (tmp_path / "from-a-file").write_text("f" * 40 + "\n")
    monkeypatch.setenv("SFCLOUD_CLUSTER_SECRET_FILE", str(tmp_path / "from-a-file"))
    assert signing.load_secret(tmp_path) == b"f" * 40
