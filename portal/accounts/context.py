"""Template context: the namespaces for the top bar's switcher, and what
the person may manage (for the navigation)."""

from __future__ import annotations

from django.http import HttpRequest

from portal.accounts.access import ALL_NAMESPACES, SESSION_KEY, _Roles, resolve_current
from portal.accounts.models import SYSTEM_NAMESPACE, Membership, Namespace, Role


def namespaces(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    memberships = dict(
        Membership.objects.filter(user=user).values_list("namespace__name", "role")
    )
    if user.is_superuser:
        memberships[SYSTEM_NAMESPACE] = Role.ADMIN
    roles = _Roles(memberships)
    choices = (list(Namespace.objects.values_list("name", flat=True)) if roles.is_system
               else sorted(memberships))
    current, everything = resolve_current(request.session.get(SESSION_KEY), memberships,
                                          choices)
    return {
        "namespaces": choices,
        "current_namespace": current,
        "all_namespaces": everything,
        "all_namespaces_value": ALL_NAMESPACES if roles.is_system else None,
        "may_manage": roles.is_system_admin or Role.ADMIN in memberships.values(),
        "is_system_admin": roles.is_system_admin,
        "is_system": roles.is_system,
    }
