"""How an API reference names an object: by UUID (deleted ones included, so
a client can read back "deleted") or by name (active ones only), and only
within the namespaces the caller may see."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from cloudstate.etcd import KeyValue
from cloudstate.vocabulary import ObjectKind
from portal.cloud.errors import BadRequest, NotFound

Namespaces = frozenset[str] | None  # None: every namespace (the system namespace's view)


class _Spec(Protocol):
    name: str
    namespace: str


class _Record(Protocol):
    @property
    def spec(self) -> _Spec: ...


R = TypeVar("R", bound=_Record)
S = TypeVar("S")


@dataclass(frozen=True)
class SpecRecord(Generic[S]):
    """An object only the portal writes and no agent reports on (a security
    group, an address set): its spec is the whole of it, and it is "created"
    for as long as it exists. A subclass names its kind and its spec's parser."""

    kind: ClassVar[ObjectKind]
    parse: ClassVar[Callable[[bytes], Any]]
    spec: S
    revision: int = 0

    @classmethod
    def from_kv(cls, kv: KeyValue) -> Self:
        return cls(spec=cls.parse(kv.value), revision=kv.mod_revision)

    @property
    def uuid(self) -> str:
        return self.spec.uuid  # type: ignore[attr-defined]

    @property
    def state(self) -> str:
        return "created"


def is_uuid(ref: str) -> bool:
    try:
        return str(uuidlib.UUID(ref)) == ref.lower()
    except ValueError:
        return False


def visible(namespace: str, namespaces: Namespaces) -> bool:
    return namespaces is None or namespace in namespaces


async def find(ref: str, namespaces: Namespaces, *, kind: str,
               load: Callable[[str], Awaitable[R | None]],
               active: Callable[[Namespaces], Awaitable[Iterable[R]]]) -> R:
    """The one object ``ref`` names: ``load`` reads one by UUID, ``active``
    lists the active ones the namespaces hold."""
    if is_uuid(ref):
        record = await load(ref.lower())
        if record is not None and visible(record.spec.namespace, namespaces):
            return record
        raise NotFound(f"{kind} {ref} not found")
    found = [r for r in await active(namespaces) if r.spec.name == ref]
    if not found:
        raise NotFound(f"{kind} {ref} not found")
    if len(found) > 1:
        raise Ambiguous(kind, ref, found)
    return found[0]


class Ambiguous(BadRequest):
    """A name that several objects have used as a reference (400, as in
    Shaken Fist): the caller must say which by UUID."""

    def __init__(self, kind: str, ref: str, found: Iterable[_Record]):
        spaces = sorted({record.spec.namespace for record in found})
        where = f"namespace \"{spaces[0]}\"" if len(spaces) == 1 \
            else "namespaces " + ", ".join(f'"{ns}"' for ns in spaces)
        super().__init__(f"multiple {kind}s have the name \"{ref}\" in {where}: "
                         "use the UUID")
