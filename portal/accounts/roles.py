"""What a role lets someone do, the same for people in the portal and for
API callers.

A role in ``system`` applies to every namespace; elsewhere the higher of
the person's own role there and their system role counts. Anything in a
namespace the caller can't read is *not found* (404), never *forbidden*,
so guessing names or UUIDs reveals nothing; a caller who can read but not
change gets a 403 that says which role they have.
"""

from __future__ import annotations

from collections.abc import Mapping

from portal.accounts.models import SYSTEM_NAMESPACE, Role
from portal.cloud.errors import Forbidden, NotFound

RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3}


class RoleChecks:
    """Mixed into anything with ``memberships``: namespace name -> role."""

    memberships: Mapping[str, str]

    @property
    def is_system(self) -> bool:
        """A member of ``system`` (any role) sees every namespace."""
        return SYSTEM_NAMESPACE in self.memberships

    @property
    def is_system_admin(self) -> bool:
        return self.memberships.get(SYSTEM_NAMESPACE) == Role.ADMIN

    @property
    def visible(self) -> frozenset[str] | None:
        """The namespaces whose objects may be read; None means all of them."""
        return None if self.is_system else frozenset(self.memberships)

    def role_in(self, namespace: str) -> str | None:
        roles = [r for r in (self.memberships.get(namespace),
                             self.memberships.get(SYSTEM_NAMESPACE)) if r]
        return max(roles, key=lambda r: RANK.get(r, 0)) if roles else None

    def _at_least(self, namespace: str, role: str) -> bool:
        return RANK.get(self.role_in(namespace) or "", 0) >= RANK[role]

    def can_read(self, namespace: str) -> bool:
        return self._at_least(namespace, Role.VIEWER)

    def can_operate(self, namespace: str) -> bool:
        return self._at_least(namespace, Role.MEMBER)

    def can_admin(self, namespace: str) -> bool:
        return self._at_least(namespace, Role.ADMIN)

    @property
    def administered(self) -> frozenset[str] | None:
        """Namespaces this caller manages; None means all of them."""
        if self.is_system_admin:
            return None
        return frozenset(ns for ns, role in self.memberships.items() if role == Role.ADMIN)

    def require_read(self, namespace: str, what: str) -> None:
        if not self.can_read(namespace):
            raise NotFound(f"{what} not found")

    def require_operate(self, namespace: str, what: str) -> None:
        self.require_read(namespace, what)
        if not self.can_operate(namespace):
            raise Forbidden(
                f"your role in namespace {namespace} is {self.role_in(namespace)}: "
                "it may look but not change anything"
            )

    def require_admin(self, namespace: str, what: str) -> None:
        self.require_read(namespace, what)
        if not self.can_admin(namespace):
            raise Forbidden(
                f"only an admin of namespace {namespace} may do this "
                f"(your role there is {self.role_in(namespace)})"
            )

    def require_system_admin(self, what: str) -> None:
        if not self.is_system_admin:
            raise Forbidden(f"only an admin of the system namespace may {what}")
