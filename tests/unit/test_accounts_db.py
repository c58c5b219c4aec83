"""Keys, personal tokens, the failed-login limit and the audit trail,
against Django's test database (no cloud needed)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import signing
from django.utils import timezone

from portal.accounts import audit, keys, people, throttle
from portal.accounts.actor import Actor
from portal.accounts.models import ApiKey, AuditEvent, LoginFailure, Namespace, PersonalToken, Via
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated

pytestmark = pytest.mark.django_db(transaction=True)


async def test_key_tokens_end_when_the_key_is_rotated_or_deleted() -> None:
    ns = await Namespace.objects.acreate(name="unit")
    key, created = await keys.set_key(ns, "ci", "first-secret-of-ci")
    assert created and key.digest != "first-secret-of-ci"
    token, lifetime = await keys.authenticate_key("unit", "first-secret-of-ci")
    assert (await keys.principal_for_token(token)).name == "key unit/ci"
    await keys.set_key(ns, "ci", "second-secret-of-ci")
    with pytest.raises(Unauthenticated, match="has been changed"):
        await keys.principal_for_token(token)
    with pytest.raises(Unauthenticated):
        await keys.authenticate_key("unit", "first-secret-of-ci")
    token, _ = await keys.authenticate_key("unit", "second-secret-of-ci")
    await ApiKey.objects.filter(pk=key.pk).adelete()
    with pytest.raises(Unauthenticated, match="no longer exists"):
        await keys.principal_for_token(token)


async def test_bearer_tokens_expire(monkeypatch: pytest.MonkeyPatch, settings) -> None:  # type: ignore[no-untyped-def]
    ns = await Namespace.objects.acreate(name="expiring")
    await keys.set_key(ns, "ci", "a-long-secret-key")
    real = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real() - settings.API_TOKEN_LIFETIME - 5)
    token, _ = await keys.authenticate_key("expiring", "a-long-secret-key")
    monkeypatch.setattr(signing.time, "time", real)
    with pytest.raises(Unauthenticated, match="token expired"):
        await keys.principal_for_token(token)


async def test_personal_tokens_expire_revoke_and_follow_their_person() -> None:
    from asgiref.sync import sync_to_async

    user = await sync_to_async(get_user_model().objects.create_user)("tok", password="x" * 12)
    person = Actor.own_account(user, None)
    token, secret = await sync_to_async(people.create_token)(person, "t", 7)
    principal = await keys.principal_for_token(secret)
    assert principal.username == "tok" and principal.visible == frozenset()
    await PersonalToken.objects.filter(pk=token.pk).aupdate(
        expires=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Unauthenticated, match="expired"):
        await keys.principal_for_token(secret)
    await PersonalToken.objects.filter(pk=token.pk).aupdate(
        expires=timezone.now() + timedelta(days=1))
    await sync_to_async(people.revoke_token)(person, token.pk)
    with pytest.raises(Unauthenticated, match="revoked"):
        await keys.principal_for_token(secret)
    with pytest.raises(BadRequest, match="between 1 and 365 days"):
        await sync_to_async(people.create_token)(person, "t", 10_000)


def test_failed_logins_are_limited_per_account_and_per_address(settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOGIN_FAILURES_PER_USER = 3
    settings.LOGIN_FAILURES_PER_ADDRESS = 5
    for _ in range(3):
        assert throttle.check("Bob", "10.9.9.9") is None
        throttle.failed("Bob", "10.9.9.9")
    refusal = throttle.check("bob", "192.0.2.1")  # account names are case-blind
    assert refusal is not None and "for this account" in refusal.message
    assert 0 < refusal.retry_after <= settings.LOGIN_FAILURE_WINDOW
    assert throttle.check("carol", "10.9.9.9") is None
    throttle.failed("carol", "10.9.9.9")
    throttle.failed("dave", "10.9.9.9")
    refusal = throttle.check("erin", "10.9.9.9")
    assert refusal is not None and "from your address" in refusal.message
    assert throttle.check("erin", "10.9.9.9", account_limit=100) is not None
    assert throttle.check("erin", "10.9.9.9").per == "address"
    # Old failures age out of the window.
    LoginFailure.objects.update(when=timezone.now() - timedelta(hours=1))
    assert throttle.check("bob", "10.9.9.9") is None
    throttle.succeeded("bob")
    assert not LoginFailure.objects.filter(username="bob").exists()


def test_a_namespace_has_its_own_limit_across_addresses(settings) -> None:  # type: ignore[no-untyped-def]
    """Wrong API keys for one namespace from many addresses: each address is
    under its own limit, the namespace's limit stops them together."""
    settings.LOGIN_FAILURES_PER_ADDRESS = 5
    for number in range(7):
        address = f"198.51.100.{number}"
        assert throttle.check("api:shop", address, account_limit=7,
                              account_name="namespace") is None
        throttle.failed("api:shop", address)
    refusal = throttle.check("api:shop", "203.0.113.9", account_limit=7,
                             account_name="namespace")
    assert refusal is not None and "for this namespace" in refusal.message
    assert refusal.per == "account"
    assert throttle.check("api:other", "203.0.113.9", account_limit=7) is None


async def test_audit_recording_names_the_outcome() -> None:
    who = Actor(name="vera", memberships={"a": "viewer"}, via=Via.API, address="127.0.0.1")
    with pytest.raises(Forbidden):
        async with audit.recording(who, "a", "delete", "instance", object_id="u1"):
            who.require_operate("a", "instance u1")
    with pytest.raises(NotFound):
        async with audit.recording(who, "b", "delete", "instance"):
            who.require_operate("b", "instance u2")
    async with audit.recording(who, "a", "snapshot", "instance") as entry:
        entry.object_name = "web"
    events = [e async for e in AuditEvent.objects.order_by("id")]
    assert [(e.actor, e.outcome) for e in events] == [
        ("vera", "denied"), ("vera", "refused"), ("vera", "ok")]
    assert events[0].source == "127.0.0.1" and "viewer" in events[0].detail
    assert {e.via for e in events} == {"api"}
    assert events[2].object_name == "web"


def test_people_service_refusals() -> None:
    admin_user = get_user_model().objects.create_user("root", password="x" * 12)
    Namespace.objects.create(name="system")
    boss = Actor(name="root", memberships={"system": "admin"}, via=Via.PAGE,
                 user_id=admin_user.pk)
    people.set_membership(boss, "system", "root", "admin")
    with pytest.raises(Conflict):
        people.create_user(boss, "ROOT", "another-password-1")
    with pytest.raises(BadRequest, match="too short"):
        people.create_user(boss, "newbie", "abc")
    with pytest.raises(BadRequest, match="last admin of the system namespace"):
        people.remove_membership(boss, "system", admin_user.pk)
    with pytest.raises(BadRequest, match="own account"):
        people.set_active(boss, admin_user.pk, False)
    with pytest.raises(Forbidden):
        people.create_user(Actor(name="x", memberships={"a": "admin"}), "y", "pw-long-enough")
    assert not get_user_model().objects.filter(username="newbie").exists()


async def test_audit_records_past_their_retention_are_pruned(settings) -> None:  # type: ignore[no-untyped-def]
    for object_id in ("i-old", "i-new"):
        await audit.record(Actor(name="someone"), "unit", "delete", "instance",
                           object_id=object_id)
    await AuditEvent.objects.filter(object_id="i-old").aupdate(
        when=timezone.now() - timedelta(days=40))
    settings.AUDIT_RETENTION_DAYS = 0  # forever
    assert await audit.prune() == 0
    settings.AUDIT_RETENTION_DAYS = 30
    assert await audit.prune() == 1
    assert [e.object_id async for e in AuditEvent.objects.all()] == ["i-new"]
