"""Which namespaces a person may see, and which one they are working in.

A member of ``system`` sees every namespace, and may pick "All namespaces"
to see everything at once. Everyone else sees the namespaces they belong
to. The namespace a person is "in" is kept in their session and switched
from the top bar; new objects are created there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from channels import auth as channels_auth
from django.conf import settings
from django.http import HttpRequest

from portal.accounts.actor import Actor, address_of
from portal.accounts.keys import memberships_of
from portal.accounts.models import Namespace
from portal.accounts.roles import RoleChecks

SESSION_KEY = "sfcloud_namespace"
# Not a valid namespace name, so it can't collide with one.
ALL_NAMESPACES = "*"


@dataclass(frozen=True)
class Access(RoleChecks):
    memberships: Mapping[str, str] = field(default_factory=dict)  # namespace -> role
    current: str | None = None  # None with all_namespaces, or when they belong nowhere
    all_namespaces: bool = False
    username: str = ""
    user_id: int | None = None

    @property
    def name(self) -> str:
        """How the audit trail names this person."""
        return self.username

    def actor(self, request: Any) -> Actor:
        """This person as the one asking for a change from a page (or a
        page's websocket: ``request`` may be an ASGI scope)."""
        return Actor.for_page(self, address_of(request))

    @property
    def scope(self) -> frozenset[str] | None:
        """What lists show: the current namespace, or everything (None)."""
        if self.all_namespaces:
            return None
        return frozenset({self.current}) if self.current else frozenset()

    @property
    def can_operate_here(self) -> bool:
        if self.all_namespaces:
            return any(self.can_operate(ns) for ns in self.memberships)
        return self.current is not None and self.can_operate(self.current)


async def namespace_choices(memberships: Mapping[str, str]) -> list[str]:
    """The namespaces a person may switch to."""
    if _Roles(memberships).is_system:
        return [name async for name in Namespace.objects.values_list("name", flat=True)]
    return sorted(memberships)


@dataclass(frozen=True)
class _Roles(RoleChecks):
    memberships: Mapping[str, str]


def resolve_current(wanted: str | None, memberships: Mapping[str, str],
                    choices: list[str]) -> tuple[str | None, bool]:
    """(current namespace, all namespaces?) from what the session asks for."""
    is_system = _Roles(memberships).is_system
    if wanted == ALL_NAMESPACES and is_system:
        return None, True
    if wanted in choices:
        return wanted, False
    own = sorted(memberships)
    return (own[0] if own else None), False


async def _access(user: Any, wanted: str | None) -> Access:
    if user is None or not user.is_authenticated:
        return Access()
    memberships = await memberships_of(user)
    choices = await namespace_choices(memberships)
    current, everything = resolve_current(wanted, memberships, choices)
    return Access(memberships=memberships, current=current, all_namespaces=everything,
                  username=user.get_username(), user_id=user.pk)


async def access_for(request: HttpRequest) -> Access:
    """For pages: the person's roles now, and the namespace they work in."""
    user = await request.auser()
    wanted = await request.session.aget(SESSION_KEY) if user.is_authenticated else None
    return await _access(user, wanted)


async def actor_for(request: HttpRequest) -> tuple[Access, Actor]:
    """For pages that change something: what the person sees, and the
    person as the actor of the change."""
    access = await access_for(request)
    return access, access.actor(request)


async def access_for_scope(scope: dict[str, Any]) -> Access:
    """For websocket consumers (behind Channels' AuthMiddlewareStack)."""
    user = scope.get("user")
    session = scope.get("session")
    wanted = await session.aget(SESSION_KEY) if session is not None else None
    return await _access(user, wanted)


async def access_now(scope: dict[str, Any]) -> Access:
    """For a websocket open a while: the person's roles as they are now,
    read afresh (the scope's user and session were loaded at connect). A
    session logged out or ended by a new password, or an account disabled
    since, has no access at all."""
    session = scope.get("session")
    if session is None or not session.session_key:
        return Access()
    fresh = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
    user = await channels_auth.get_user({"session": fresh})
    if not user.is_authenticated or user.pk != getattr(scope.get("user"), "pk", None):
        return Access()
    return await _access(user, await fresh.aget(SESSION_KEY))
