"""What a namespace owns, asked of every kind of object.

Each kind of cloud object registers one function saying what a namespace
still owns of that kind; deleting a namespace is refused while any of them
names something, and the refusal lists it. A new kind plugs in with one line
in its service module:

    ownership.register("networks", _owned_networks)

where ``_owned_networks(namespace) -> list[str]`` returns names (or UUIDs).

What belongs to a namespace without anyone having made it (its ``default``
security group) is not listed; its kind registers a ``release`` too, which
removes it once the namespace has nothing else left and is being deleted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

OwnedLister = Callable[[str], Awaitable[list[str]]]
Releaser = Callable[[str], Awaitable[None]]

_listers: dict[str, OwnedLister] = {}
_releasers: dict[str, Releaser] = {}


def register(kind: str, lister: OwnedLister, release: Releaser | None = None) -> OwnedLister:
    existing = _listers.get(kind)
    if existing is not None and existing is not lister:
        raise ValueError(f"{kind} already has an ownership lister: {existing!r}")
    _listers[kind] = lister
    if release is not None:
        _releasers[kind] = release
    return lister


async def release(namespace: str) -> None:
    """Remove what a namespace being deleted holds without owning it."""
    for kind in sorted(_releasers):
        await _releasers[kind](namespace)


def kinds() -> list[str]:
    return sorted(_listers)


async def owned_by(namespace: str) -> dict[str, list[str]]:
    """kind -> what the namespace still owns of it (kinds with nothing left omitted)."""
    names = sorted(_listers)
    found = await asyncio.gather(*(_listers[kind](namespace) for kind in names))
    return {kind: sorted(items) for kind, items in zip(names, found, strict=True) if items}


def describe(owned: dict[str, list[str]], limit: int = 10) -> str:
    """'instances: a, b; networks: n1' with long lists cut short."""
    parts = []
    for kind, items in owned.items():
        shown = ", ".join(items[:limit])
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        parts.append(f"{kind}: {shown}{more}")
    return "; ".join(parts)
