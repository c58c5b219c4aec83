"""Who asks for a change: a person or a namespace's key, with the roles they
hold at this moment, through which door (a page, the API, an agent, the
portal itself) and from which address.

Every service that changes something takes an Actor first: it checks the
Actor's role, writes the audit row and the object's event under the Actor's
name. So the two front doors cannot drift: the same person is the same name
whichever door they use (their username; a key is "key <namespace>/<key>"),
and only ``via`` tells the doors apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portal.accounts.models import SYSTEM_NAMESPACE, Role, Via
from portal.accounts.roles import RoleChecks

if TYPE_CHECKING:
    from portal.accounts.access import Access
    from portal.accounts.keys import Principal

ANONYMOUS = "anonymous"
PORTAL = "portal"


@dataclass(frozen=True)
class Actor(RoleChecks):
    name: str
    memberships: Mapping[str, str] = field(default_factory=dict, compare=False)
    via: str = Via.SYSTEM
    address: str | None = None
    # Where a request acts when it names no namespace: a key's namespace, a
    # token's default one, or the namespace a person works in on the pages.
    namespace: str | None = None
    user_id: int | None = None  # a person's; None for a key

    @classmethod
    def for_api(cls, principal: Principal, address: str | None) -> Actor:
        return cls(name=principal.name, memberships=principal.memberships, via=Via.API,
                   address=address, namespace=principal.namespace or None,
                   user_id=principal.user_id)

    @classmethod
    def for_page(cls, access: Access, address: str | None) -> Actor:
        return cls(name=access.name or ANONYMOUS, memberships=access.memberships,
                   via=Via.PAGE, address=address, namespace=access.current,
                   user_id=access.user_id)

    @classmethod
    def own_account(cls, user: Any, address: str | None) -> Actor:
        """A person acting on their own account only (logging in, their
        password), from a page: no role is looked up for that."""
        return cls(name=user.get_username(), via=Via.PAGE, address=address, user_id=user.pk)

    @classmethod
    def unknown(cls, name: str, address: str | None, via: str = Via.PAGE) -> Actor:
        """Someone not (yet) known: a log-in attempt, named as they typed it.
        They hold no role."""
        return cls(name=name or ANONYMOUS, via=via, address=address)

    @classmethod
    def portal(cls) -> Actor:
        """The portal itself, for housekeeping it does on its own."""
        return cls(name=PORTAL, memberships={SYSTEM_NAMESPACE: Role.ADMIN}, via=Via.SYSTEM)


def address_of(request: Any) -> str | None:
    """The client's address from an HTTP request or a websocket scope."""
    if request is None:
        return None
    if isinstance(request, dict):  # an ASGI scope
        client = request.get("client")
        return client[0] if client else None
    return request.META.get("REMOTE_ADDR") or None
