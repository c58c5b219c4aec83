"""Template context: the namespaces for the top bar's switcher."""

from __future__ import annotations

from django.http import HttpRequest

from portal.accounts.access import SESSION_KEY
from portal.accounts.models import Membership


def namespaces(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    names = sorted(
        Membership.objects.filter(user=user).values_list("namespace__name", flat=True)
    )
    current = request.session.get(SESSION_KEY)
    return {"namespaces": names, "current_namespace": current if current in names else
            (names[0] if names else None)}
