"""Which namespaces a person may see, and which one they are working in.

A member of ``system`` sees every namespace. Everyone else sees the
namespaces they belong to. The namespace a person is "in" is kept in their
session and switched from the top bar; new objects are created there.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from portal.accounts.models import SYSTEM_NAMESPACE, Membership, Role

SESSION_KEY = "sfcloud_namespace"


@dataclass(frozen=True)
class Access:
    memberships: dict[str, str]  # namespace name -> role
    current: str | None

    @property
    def is_system(self) -> bool:
        return SYSTEM_NAMESPACE in self.memberships

    @property
    def visible(self) -> frozenset[str] | None:
        """None means every namespace."""
        return None if self.is_system else frozenset(self.memberships)

    def role_in(self, namespace: str) -> str | None:
        if namespace in self.memberships:
            return self.memberships[namespace]
        return self.memberships.get(SYSTEM_NAMESPACE)

    def can_operate(self, namespace: str) -> bool:
        return self.role_in(namespace) in (Role.ADMIN, Role.MEMBER)


async def access_for(request: HttpRequest) -> Access:
    user = await request.auser()
    if not user.is_authenticated:
        return Access(memberships={}, current=None)
    memberships = {
        m.namespace.name: m.role
        async for m in Membership.objects.filter(user=user).select_related("namespace")
    }
    current = request.session.get(SESSION_KEY)
    if current not in memberships:
        current = next(iter(sorted(memberships)), None)
    return Access(memberships=memberships, current=current)
