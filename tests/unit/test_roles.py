"""Roles: what each one allows, and that unseen namespaces are 404, not 403."""

from __future__ import annotations

import asyncio

import pytest

from portal.accounts.access import ALL_NAMESPACES, Access, resolve_current
from portal.accounts.keys import Principal
from portal.cloud import ownership
from portal.cloud.errors import Forbidden, NotFound


def test_roles_rank_and_system_applies_everywhere() -> None:
    viewer = Access(memberships={"a": "viewer"})
    assert viewer.can_read("a") and not viewer.can_operate("a") and not viewer.can_read("b")
    member_and_system_viewer = Access(memberships={"a": "member", "system": "viewer"})
    assert member_and_system_viewer.can_operate("a")
    assert member_and_system_viewer.can_read("b") and not member_and_system_viewer.can_operate("b")
    assert member_and_system_viewer.visible is None
    admin = Access(memberships={"a": "viewer", "system": "admin"})
    assert admin.role_in("a") == "admin" and admin.administered is None
    assert Access(memberships={"a": "admin", "b": "member"}).administered == {"a"}


def test_unseen_is_not_found_seen_but_not_allowed_is_forbidden() -> None:
    viewer = Access(memberships={"a": "viewer"})
    with pytest.raises(NotFound):
        viewer.require_operate("b", "instance x")
    with pytest.raises(Forbidden, match="your role in namespace a is viewer"):
        viewer.require_operate("a", "instance x")
    with pytest.raises(Forbidden, match="only an admin of namespace a"):
        Access(memberships={"a": "member"}).require_admin("a", "namespace a")
    with pytest.raises(Forbidden):
        Access(memberships={"system": "member"}).require_system_admin("create namespaces")


def test_a_key_is_an_admin_of_its_own_namespace_only() -> None:
    key = Principal(namespace="a", key_name="ci")
    assert key.can_admin("a") and not key.can_read("b") and not key.is_system
    assert key.name == "key a/ci"
    assert Principal(namespace="system", key_name="admin").visible is None
    person = Principal(namespace="a", username="alice", memberships={"a": "viewer"})
    assert person.name == "alice" and not person.can_operate("a")


def test_all_namespaces_only_for_system_members() -> None:
    assert resolve_current(ALL_NAMESPACES, {"system": "viewer"}, ["a", "system"]) == (None, True)
    assert resolve_current(ALL_NAMESPACES, {"a": "admin"}, ["a"]) == ("a", False)
    assert resolve_current("b", {"a": "admin"}, ["a"]) == ("a", False)
    assert resolve_current(None, {}, []) == (None, False)
    assert Access(all_namespaces=True).scope is None
    assert Access(current="a").scope == {"a"}


def test_ownership_registry_lists_what_remains(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this test's kind: the real ones would ask etcd.
    monkeypatch.setattr(ownership, "_listers", {})

    async def lister(namespace: str) -> list[str]:
        return ["b", "a"] if namespace == "full" else []

    ownership.register("test-widgets", lister)
    ownership.register("test-widgets", lister)  # the same function again is harmless
    with pytest.raises(ValueError, match="already has an ownership lister"):
        ownership.register("test-widgets", lambda ns: lister(ns))
    owned = asyncio.run(ownership.owned_by("full"))
    assert owned["test-widgets"] == ["a", "b"]
    assert "test-widgets" not in asyncio.run(ownership.owned_by("empty"))
    assert ownership.describe({"w": [str(i) for i in range(12)]}, limit=3) == \
        "w: 0, 1, 2 and 9 more"
