"""Quotas per namespace: the most of each kind of resource a namespace may
hold, and how much it holds now.

A namespace's limits are one etcd record (``Keys.quota``), written by a
system admin; a kind it does not name has no limit. What a namespace holds
is never stored: it is counted from the namespace's own records (its
instances, interfaces, networks, artifacts and blobs), so it can't drift
from them, and whatever removes a record (the portal, or an agent finishing
a delete) gives its share back in that same write. A create that takes a
limited kind re-counts after reading the namespace's quota fence
(``Keys.quota_fence``) and rewrites the fence in the transaction that makes
the object, on the condition that the fence and the limits are unchanged:
of two creates racing for the last unit, the second one's transaction fails,
it counts again, and is refused (portal.cloud.quotas).

Kinds register here with what counts them (``register``), so a new kind of
object adds its quota in one place: a ``QuotaKind`` and a ``Counter``.
Everything here is plain data and arithmetic (no etcd, no Django), shared by
the portal's checks, its live pages and the settings reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cloudstate import storage
from cloudstate.keys import Keys
from cloudstate.model import (
    Artifact,
    Blob,
    BlobObserved,
    InstanceSpec,
    InterfaceSpec,
    NetworkSpec,
    SecurityGroup,
)

BYTES = "bytes"
_BYTE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_BYTE_AMOUNT = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
NO_LIMIT_WORDS = frozenset({"", "none", "unlimited"})
# Big enough for any real cloud, small enough for JSON and etcd to carry exactly.
MAX_AMOUNT = 1 << 62


@dataclass(frozen=True)
class QuotaKind:
    """One thing a quota limits: ``name`` as the API, the settings and the
    refusals spell it, ``label`` as pages show it, ``unit`` of its amounts,
    ``default``: a new namespace's limit unless SFCLOUD_DEFAULT_QUOTAS says
    otherwise (None: no limit)."""

    name: str
    label: str
    unit: str = ""  # "", "MiB", "GB" or BYTES
    default: int | None = None


if TYPE_CHECKING:  # the settings reader imports this module: no etcd client here
    from cloudstate.etcd import KeyValue

Records = Callable[[str], Iterable["KeyValue"]]  # a key prefix -> the records under it


@dataclass(frozen=True)
class Counter:
    """What counts some kinds: the key prefixes it reads, and a function of
    those records and a namespace giving each of its kinds' amounts."""

    kinds: tuple[str, ...]
    prefixes: Callable[[Keys], tuple[str, ...]]
    count: Callable[[Records, Keys, str], dict[str, int]]


KINDS: dict[str, QuotaKind] = {}
_COUNTERS: dict[str, Counter] = {}  # kind -> its counter


def register(counter: Counter, *kinds: QuotaKind) -> None:
    """Add kinds of quota (in the order pages list them) and what counts them."""
    if {kind.name for kind in kinds} != set(counter.kinds):
        raise ValueError("a counter counts exactly the kinds registered with it")
    for kind in kinds:
        if kind.name in KINDS:
            raise ValueError(f"quota kind {kind.name} is registered twice")
    for kind in kinds:
        KINDS[kind.name] = kind
        _COUNTERS[kind.name] = counter


# --- amounts and limits ----------------------------------------------------------------------


def shown(kind: str, amount: int) -> str:
    """An amount as people read it: "8", "2048 MiB", "20 GB", "1.5 GiB"."""
    unit = KINDS[kind].unit
    if unit == BYTES:
        return _binary(amount, (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20),
                                ("KiB", 1 << 10)), "bytes")
    if unit == "MiB":  # as the portal shows memory elsewhere
        return _binary(amount, (("GiB", 1 << 10),), "MiB")
    return f"{amount} {unit}" if unit else str(amount)


def _binary(amount: int, units: tuple[tuple[str, int], ...], smallest: str) -> str:
    for suffix, size in units:
        if amount >= size:
            return f"{amount / size:.1f}".removesuffix(".0") + f" {suffix}"
    return f"{amount} {smallest}"


def as_input(kind: str, amount: int) -> str:
    """An amount as a form shows it to edit, read back exactly by
    ``parse_amount``: sizes in the largest unit they are a whole number of."""
    if KINDS[kind].unit == BYTES and amount:
        for suffix in ("T", "G", "M", "K"):
            size = _BYTE_UNITS[suffix.lower()]
            if amount % size == 0:
                return f"{amount // size}{suffix}"
    return str(amount)


def parse_amount(kind: str, value: object) -> int | None:
    """A limit as given (JSON or a form): a whole number of the kind's unit,
    or for bytes also a size such as "20G" or "512 MiB" (1024-based); None,
    "" or "none": no limit. ValueError says what is accepted."""
    unit = KINDS[kind].unit
    accepts = ("a whole number of bytes, or a size such as 20G or 512MiB"
               if unit == BYTES else
               f"a whole number{' of ' + unit if unit else ''}") + ", or none for no limit"
    if value is None or (isinstance(value, str) and value.strip().lower() in NO_LIMIT_WORDS):
        return None
    amount: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            amount = int(text)
        elif unit == BYTES and (match := _BYTE_AMOUNT.fullmatch(text)):
            amount = int(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    if amount is None or amount < 0 or amount > MAX_AMOUNT:
        raise ValueError(f"{str(value)[:40]!r} is not a limit: give {accepts}")
    return amount


def parse_limits(text: str) -> dict[str, int | None]:
    """``kind=amount`` pairs separated by commas, as SFCLOUD_DEFAULT_QUOTAS
    holds them ("vcpus=32,networks=none"); ValueError names a bad one."""
    found: dict[str, int | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, amount = item.partition("=")
        name = name.strip()
        if not equals or name not in KINDS:
            raise ValueError(f"{item!r} is not kind=amount with a kind of "
                             f"{', '.join(KINDS)}")
        found[name] = parse_amount(name, amount)
    return found


def defaults(overrides: Mapping[str, int | None]) -> dict[str, int]:
    """A new namespace's limits: each kind's default, as ``overrides`` change them."""
    chosen = {name: kind.default for name, kind in KINDS.items()}
    chosen.update(overrides)
    return {name: amount for name, amount in chosen.items() if amount is not None}


def limits_from_json(raw: bytes | str | None) -> dict[str, int]:
    """A stored record's limits (kinds this version does not know are kept out)."""
    if not raw:
        return {}
    data = json.loads(raw)
    return {name: int(amount) for name, amount in (data.get("limits") or {}).items()
            if name in KINDS and isinstance(amount, int) and not isinstance(amount, bool)}


def limits_to_json(limits: Mapping[str, int]) -> str:
    return json.dumps({"limits": dict(sorted(limits.items()))}, sort_keys=True)


# --- the check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exceeded:
    """A request that would take ``kind`` past its limit. ``asked`` 0 means
    a new object whose size is not known yet (an image still to fetch): it
    needs room left."""

    kind: str
    limit: int
    used: int
    asked: int

    @property
    def message(self) -> str:
        asked = shown(self.kind, self.asked) if self.asked else "more (its size is not known yet)"
        return (f"quota exceeded: {self.kind} limit {shown(self.kind, self.limit)}, "
                f"in use {shown(self.kind, self.used)}, asked {asked}")


def over(limit: int, used: int, asked: int) -> bool:
    return used + asked > limit if asked > 0 else used >= limit


def first_exceeded(limits: Mapping[str, int], used: Mapping[str, int],
                   asked: Mapping[str, int]) -> Exceeded | None:
    """The first kind (in registration order) ``asked`` would take past its limit."""
    for name in KINDS:
        if name in asked and name in limits and over(limits[name], used.get(name, 0),
                                                      asked[name]):
            return Exceeded(name, limits[name], used.get(name, 0), asked[name])
    return None


# --- counting ----------------------------------------------------------------------------------


def prefixes_for(keys: Keys, kinds: Iterable[str]) -> tuple[str, ...]:
    """The key prefixes to read to count ``kinds``."""
    found: dict[str, None] = {}
    for counter in _counters(kinds):
        found.update(dict.fromkeys(counter.prefixes(keys)))
    return tuple(found)


def usage(records: Records, keys: Keys, namespace: str,
          kinds: Iterable[str] | None = None) -> dict[str, int]:
    """What ``namespace`` holds of ``kinds`` (default: every kind)."""
    wanted = list(KINDS) if kinds is None else list(kinds)
    counted: dict[str, int] = {}
    for counter in _counters(wanted):
        counted.update(counter.count(records, keys, namespace))
    return {name: counted.get(name, 0) for name in wanted}


def _counters(kinds: Iterable[str]) -> list[Counter]:
    found: list[Counter] = []
    for name in kinds:
        counter = _COUNTERS[name]
        if counter not in found:
            found.append(counter)
    return found


# --- the built-in kinds ------------------------------------------------------------------------


def _instances(records: Records, keys: Keys, namespace: str) -> dict[str, int]:
    # A deleted instance gives its share back at once, though its node may
    # still be tearing it down (the name is free again at that moment too).
    specs = [spec for kv in records(keys.instances)
             if (spec := InstanceSpec.from_json(kv.value)).namespace == namespace
             and spec.desired != "deleted"]
    return {"instances": len(specs), "vcpus": sum(spec.cpus for spec in specs),
            "memory_mib": sum(spec.memory for spec in specs),
            "disk_gb": sum(spec.disk_total_gb for spec in specs)}


def _floating(records: Records, keys: Keys, namespace: str) -> dict[str, int]:
    # Held until given back: by a defloat, or by the agent that removes the
    # interface of a deleted instance.
    return {"floating_addresses": sum(
        1 for kv in records(keys.interfaces)
        if (nic := InterfaceSpec.from_json(kv.value)).namespace == namespace and nic.floating)}


def _networks(records: Records, keys: Keys, namespace: str) -> dict[str, int]:
    return {"networks": sum(
        1 for kv in records(keys.networks)
        if (net := NetworkSpec.from_json(kv.value)).namespace == namespace
        and net.desired != "deleted")}


def _security_groups(records: Records, keys: Keys, namespace: str) -> dict[str, int]:
    # The namespace's default group counts: it is there from the first use.
    return {"security_groups": sum(
        1 for kv in records(keys.security_groups)
        if SecurityGroup.from_json(kv.value).namespace == namespace)}


def artifact_kind(artifact_type: str) -> tuple[str, str] | None:
    """(count kind, bytes kind) an artifact of this type counts against;
    None for labels, which only point at others' versions."""
    if artifact_type == "snapshot":
        return "snapshots", "snapshot_bytes"
    if artifact_type in ("image", "other"):
        return "images", "image_bytes"
    return None


def _artifacts(records: Records, keys: Keys, namespace: str) -> dict[str, int]:
    blobs = {blob.uuid: blob for blob in (Blob.from_json(kv.value)
                                          for kv in records(keys.blobs))}
    copies: dict[str, dict[str, BlobObserved]] = {}
    for kv in records(keys.observed_blobs):
        if parts := keys.observed_blob_parts(kv.key):
            copies.setdefault(parts[1], {})[parts[0]] = BlobObserved.from_json(kv.value)

    def state_of(uuid: str) -> str:
        blob = blobs.get(uuid)
        return storage.DELETED if blob is None else storage.blob_state(blob, copies.get(uuid, {}))

    counted = {"images": 0, "image_bytes": 0, "snapshots": 0, "snapshot_bytes": 0}
    held: dict[str, set[str]] = {"image_bytes": set(), "snapshot_bytes": set()}
    for kv in records(keys.artifacts):
        artifact = Artifact.from_json(kv.value)
        kinds = artifact_kind(artifact.type)
        if artifact.namespace != namespace or artifact.desired == "deleted" or kinds is None:
            continue
        count_kind, bytes_kind = kinds
        counted[count_kind] += 1
        # The versions that hold their bytes, as reference counts see them.
        held[bytes_kind].update(version.blob_uuid for version
                                in storage.versions(artifact, state_of).kept)
    for bytes_kind, uuids in held.items():
        counted[bytes_kind] = sum(
            storage.blob_facts(blobs[uuid], copies.get(uuid, {})).size or 0
            for uuid in uuids if uuid in blobs)
    return counted


register(Counter(("instances", "vcpus", "memory_mib", "disk_gb"),
                 lambda keys: (keys.instances,), _instances),
         QuotaKind("instances", "Instances", default=20),
         QuotaKind("vcpus", "vCPUs", default=40),
         QuotaKind("memory_mib", "Memory", "MiB", default=81920),
         QuotaKind("disk_gb", "Disk", "GB", default=500))
register(Counter(("floating_addresses",), lambda keys: (keys.interfaces,), _floating),
         QuotaKind("floating_addresses", "Floating addresses", default=4))
register(Counter(("images", "image_bytes", "snapshots", "snapshot_bytes"),
                 lambda keys: (keys.artifacts, keys.blobs, keys.observed_blobs), _artifacts),
         QuotaKind("images", "Images", default=20),
         QuotaKind("image_bytes", "Image storage", BYTES, default=100 << 30),
         QuotaKind("snapshots", "Snapshots", default=40),
         QuotaKind("snapshot_bytes", "Snapshot storage", BYTES, default=200 << 30))
register(Counter(("networks",), lambda keys: (keys.networks,), _networks),
         QuotaKind("networks", "Networks", default=10))
register(Counter(("security_groups",), lambda keys: (keys.security_groups,), _security_groups),
         QuotaKind("security_groups", "Security groups", default=10))
