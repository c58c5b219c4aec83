"""Join tokens without a portal: made random and kept hashed, checked in
constant time, expired by the clock, used once; what a joining machine
says about itself checked before anything uses it; the new machine's
authorized_keys and the deploy's known_hosts written as data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cloudstate import jointokens
from cloudstate.validation import ValidationError
from deploy import joinclient, joins

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPmZtLxQ4vQ0vUvVJv9Xc0k7l6mE2d7uC2cJbq1mYw7b"


def test_a_token_is_random_shown_once_and_kept_only_as_its_hash() -> None:
    first = jointokens.make(created_by="admin", ttl=3600, etcd=True, now=1000.0)
    second = jointokens.make(created_by="admin", ttl=3600, etcd=False, now=1000.0)
    assert first.token != second.token and first.record.id != second.record.id
    token_id, secret = jointokens.parse(first.token)
    assert token_id == first.record.id
    assert secret not in first.record.to_json().decode()
    assert first.record.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert first.record.matches(secret)
    assert not first.record.matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert not second.record.matches(secret)
    assert first.record.etcd and not second.record.etcd
    assert first.record.expires_at == 4600.0


def test_a_token_expires_with_the_clock_and_is_used_once() -> None:
    made = jointokens.make(created_by="admin", ttl=60, etcd=False, now=1000.0)
    assert made.record.current_state(1059.9) == jointokens.UNUSED
    assert made.record.current_state(1060.0) == jointokens.EXPIRED
    used = made.record.redeemed(node="h4", address="10.0.0.14", host_key=HOST_KEY, now=1010.0)
    assert used.state == jointokens.USED and used.join_state == jointokens.PENDING
    # A used token stays used, whatever the clock says.
    assert used.current_state(99999.0) == jointokens.USED
    revoked = made.record.replace(state=jointokens.REVOKED)
    assert revoked.current_state(1001.0) == jointokens.REVOKED
    assert jointokens.JoinToken.from_json(used.to_json()) == used


@pytest.mark.parametrize("typed", [None, 42, "", "nope", "0123456789ab", "0123456789ab.short",
                                   "0123456789AB." + "a" * 43, "0123456789ab." + "a" * 44,
                                   "0123456789ab." + "a" * 42 + "$"])
def test_anything_that_is_not_a_token_is_a_400_naming_the_token(typed: object) -> None:
    with pytest.raises(ValidationError) as refused:
        jointokens.parse(typed)
    assert str(refused.value).startswith("token:")


def test_a_joining_machine_is_checked_before_anything_uses_it() -> None:
    good = {"name": "h4", "address": "10.0.0.14", "host_key": HOST_KEY + " root@h4"}
    found = jointokens.joiner(good)
    assert found == jointokens.Joiner("h4", "10.0.0.14", HOST_KEY)  # the comment dropped
    for field, bad in (("name", "H4"), ("name", "-h4"), ("name", "h4\n"), ("name", None),
                       ("name", "h4;reboot"),
                       ("name", "a" * 64), ("address", "10.0.0"), ("address", "0.0.0.0"),
                       ("address", "h4.example"), ("host_key", "ssh-ed25519"),
                       ("host_key", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"),
                       ("host_key", "ssh-ed25519 AAAA$(reboot)AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
                       ("host_key", f"{HOST_KEY}\nssh-ed25519 AAAA")):
        with pytest.raises(ValidationError) as refused:
            jointokens.joiner({**good, field: bad})
        assert str(refused.value).startswith(f"{field}:"), (field, bad)


def test_the_deploy_key_goes_into_authorized_keys_once(tmp_path: Path) -> None:
    keys = tmp_path / "root" / ".ssh" / "authorized_keys"
    assert joinclient.authorize("ssh-ed25519 AAAAdeploy deploy@h1", keys)
    assert not joinclient.authorize("ssh-ed25519 AAAAdeploy other-comment", keys)
    assert keys.read_text() == "ssh-ed25519 AAAAdeploy deploy@h1\n"
    assert keys.stat().st_mode & 0o777 == 0o600
    assert keys.parent.stat().st_mode & 0o777 == 0o700
    with pytest.raises(joinclient.JoinError):
        joinclient.authorize("ssh-ed25519 AAAA\ncommand=\"x\" ssh-rsa AAAA", keys)


def test_the_machines_host_key_replaces_any_other_for_its_address(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("10.0.0.11 ssh-ed25519 AAAAone\n10.0.0.14 ssh-ed25519 AAAAstale\n")
    joins.trust_host_key(known, "10.0.0.14", HOST_KEY)
    assert known.read_text() == f"10.0.0.11 ssh-ed25519 AAAAone\n10.0.0.14 {HOST_KEY}\n"


def test_a_pin_that_is_not_a_sha256_is_refused_before_connecting() -> None:
    with pytest.raises(joinclient.JoinError, match="64 hexadecimal"):
        joinclient.trusted_ca("https://192.0.2.1:13003", "abc")
    with pytest.raises(joinclient.JoinError, match="https://HOST:PORT"):
        joinclient.join("http://192.0.2.1:13003", "t", "0" * 64)


class _Answers:
    """A join listener's answers to GET /join/progress, in turn."""

    def __init__(self, *answers: dict | joinclient.JoinError):
        self.answers = list(answers)

    def call(self, method: str, path: str, body: dict | None = None,
             token: str | None = None) -> dict:
        assert (method, path, token) == ("GET", "/join/progress", "t")
        answer = self.answers.pop(0)
        if isinstance(answer, joinclient.JoinError):
            raise answer
        return answer


def test_the_machine_waits_through_a_portal_restarting_while_it_is_added() -> None:
    gone = joinclient.JoinError("https://10.0.0.11:13003 did not answer: refused")
    portal = _Answers({"state": "joining"}, gone, gone,
                      joinclient.JoinError("the portal refused (503): etcd", status=503),
                      {"state": "joined"})
    joinclient.follow(portal, "t", "h4", deadline=float("inf"), interval=0)  # type: ignore[arg-type]
    assert portal.answers == []


def test_the_machine_stops_at_a_failed_join_a_refusal_or_its_deadline() -> None:
    with pytest.raises(joinclient.JoinError, match="could not add h4: no SSH"):
        joinclient.follow(_Answers({"state": "failed", "message": "no SSH"}),  # type: ignore[arg-type]
                          "t", "h4", deadline=float("inf"), interval=0)
    with pytest.raises(joinclient.JoinError, match=r"\(403\)"):
        joinclient.follow(_Answers(joinclient.JoinError("the portal refused (403): x", 403)),  # type: ignore[arg-type]
                          "t", "h4", deadline=float("inf"), interval=0)
    with pytest.raises(joinclient.JoinError, match="not joined in time"):
        joinclient.follow(_Answers({"state": "pending"}), "t", "h4",  # type: ignore[arg-type]
                          deadline=0, interval=0)
