"""The instance list: what a row shows and how the list searches, filters
and sorts (portal.listing), over the live hub's mirror.

A row's addresses, image and tags are worked out when they are first asked
for (a page renders 50 rows; a search over 10,000 reads addresses only for
the instances whose name did not already match).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from functools import cache, cached_property
from typing import Any
from urllib.parse import urlsplit

from django.urls import reverse

from portal.cloud.instances import InstanceRecord
from portal.cloud.refs import Namespaces
from portal.instances import detail
from portal.listing import Filter, Listing, Ordered, OrderedCache, Page, Query, Sort
from portal.live.hub import Hub

# The states a row is filtered by: the instance's own while it is not built
# (creating, error, deleting), else its power state (on, off, paused...).
STATUS_ORDER = ("creating", "on", "paused", "off", "crashed", "initial", "error", "deleting")


_SOME_UUID = "00000000-0000-0000-0000-000000000000"


@cache
def _url_patterns() -> dict[str, str]:
    """Each link of a row, reversed once with a stand-in UUID (and action): a
    page of rows needs hundreds, and reverse() is not free."""
    return {
        "detail": reverse("instance-detail", args=[_SOME_UUID]),
        "console": reverse("instance-tab", args=[_SOME_UUID, "console"]),
        "delete": reverse("instance-delete", args=[_SOME_UUID]),
        "power": reverse("instance-power", args=[_SOME_UUID, "ACTION"]),
    }


class InstanceRow:
    """One instance as the list shows it."""

    def __init__(self, record: InstanceRecord, hub: Hub):
        self.record = record
        self._hub = hub

    @property
    def uuid(self) -> str:
        return self.record.uuid

    @property
    def name(self) -> str:
        return self.record.spec.name

    @cached_property
    def urls(self) -> dict[str, str]:
        return {name: url.replace(_SOME_UUID, self.uuid)
                for name, url in _url_patterns().items() if name != "power"}

    @cached_property
    def power_menu(self) -> list[dict[str, Any]]:
        """The power actions possible now (portal.instances.detail), each with its URL."""
        url = _url_patterns()["power"].replace(_SOME_UUID, self.uuid)
        return [{**button, "url": url.replace("ACTION", button["action"])}
                for button in detail.power_buttons(self.record)]

    @cached_property
    def status(self) -> str:
        state = self.record.state
        return self.record.power_state if state == "created" else state

    @property
    def nics(self) -> list[tuple[str | None, str | None]]:
        """(fixed address, floating address) of each NIC, eth0 first. Read
        each time (from the hub's parsed copies): a NIC changes (floats)
        without its instance's record changing."""
        found = []
        for uuid in self.record.spec.interfaces:
            nic = self._hub.interface(uuid)
            if nic is not None:
                found.append((nic.ipv4, nic.floating))
        return found

    @property
    def addresses(self) -> list[str]:
        return [address for address, _ in self.nics if address]

    @property
    def floating(self) -> list[str]:
        return [address for _, address in self.nics if address]

    @cached_property
    def image(self) -> str:
        """What the first disk started from, short: an image's name, a
        label, or a URL's file name."""
        for disk in self.record.spec.disks:
            if disk.type == "disk" and disk.base:
                base = disk.base
                if base.startswith(("http://", "https://")):
                    return posixpath.basename(urlsplit(base).path) or base
                return base
        return ""

    @property
    def image_full(self) -> str:
        return next((d.base for d in self.record.spec.disks if d.type == "disk" and d.base), "")

    @cached_property
    def tags(self) -> list[str]:
        """Shaken Fist's tags: the ``tags`` metadata, a list of strings."""
        tags = self.record.spec.metadata.get("tags")
        if isinstance(tags, list):
            return [tag if isinstance(tag, str) else str(tag) for tag in tags
                    if isinstance(tag, (str, int, float))]  # noqa: UP038 - a tuple is faster
        return [tags] if isinstance(tags, str) and tags else []


def _search(row: InstanceRow, term: str) -> bool:
    """Name (any part), UUID (its start), an address or floating address
    (its start), or a tag (any part)."""
    if term in row.name.casefold() or row.uuid.startswith(term):
        return True
    if any(address.startswith(term) for address in row.addresses + row.floating):
        return True
    return any(term in tag.casefold() for tag in row.tags)


def _statuses(rows: Sequence[InstanceRow]) -> list[tuple[str, str]]:
    present = {row.status for row in rows}
    order = [s for s in STATUS_ORDER if s in present] + sorted(present - set(STATUS_ORDER))
    return [(status, status) for status in order]


def _nodes(rows: Sequence[InstanceRow]) -> list[tuple[str, str]]:
    return [(node, node) for node in sorted({row.record.spec.node for row in rows} - {""})]


def _tags(rows: Sequence[InstanceRow]) -> list[tuple[str, str]]:
    found: set[str] = set()
    for row in rows:
        if row.record.spec.metadata:  # most have none: no row.tags to work out
            found.update(row.tags)
    return [(tag, tag) for tag in sorted(found)]


def _namespaces(rows: Sequence[InstanceRow]) -> list[tuple[str, str]]:
    return [(ns, ns) for ns in sorted({row.record.spec.namespace for row in rows})]


INSTANCES: Listing[InstanceRow] = Listing(
    sorts={
        "name": Sort("Name", lambda row: row.name.casefold()),
        "created": Sort("Created", lambda row: row.record.spec.created_at,
                        up="oldest first", down="newest first"),
        "state": Sort("State", lambda row: (row.status, row.name.casefold())),
        "node": Sort("Node", lambda row: (row.record.spec.node, row.name.casefold())),
        "cpus": Sort("vCPUs", lambda row: row.record.spec.cpus,
                     up="fewest first", down="most first"),
        "memory": Sort("Memory", lambda row: row.record.spec.memory,
                       up="least first", down="most first"),
    },
    default_sort="-created",
    filters={
        "state": Filter("State", lambda row, value: row.status == value, _statuses),
        "node": Filter("Node", lambda row, value: row.record.spec.node == value, _nodes),
        "tag": Filter("Tag", lambda row, value: value in row.tags, _tags),
    },
    search=_search,
    tie=lambda row: row.uuid,
    search_help="A name, the start of a UUID or an address, or a tag.",
)

# With "All namespaces" chosen, the namespace is one more filter.
INSTANCES_EVERYWHERE: Listing[InstanceRow] = Listing(
    sorts={**INSTANCES.sorts,
           "namespace": Sort("Namespace", lambda row: (row.record.spec.namespace,
                                                       row.name.casefold()))},
    default_sort=INSTANCES.default_sort,
    filters={"namespace": Filter("Namespace",
                                 lambda row, value: row.record.spec.namespace == value,
                                 _namespaces), **INSTANCES.filters},
    search=INSTANCES.search,
    tie=INSTANCES.tie,
    search_help=INSTANCES.search_help,
)


def listing_for(everything: bool) -> Listing[InstanceRow]:
    return INSTANCES_EVERYWHERE if everything else INSTANCES


def rows_in_scope(hub: Hub, namespaces: Namespaces) -> list[InstanceRow]:
    """A row for each instance the namespaces hold, in no order. A row is
    kept while its record is the same (the hub keeps each record while its
    keys' revisions hold), with what it worked out (status, tags)."""
    cache = _ROWS.setdefault(id(hub), {})
    rows = []
    for record in hub.instances(namespaces, ordered=False):
        row = cache.get(record.uuid)
        if row is None or row.record is not record:
            row = cache[record.uuid] = InstanceRow(record, hub)
        rows.append(row)
    if len(cache) > 2 * len(rows) + 1000:
        kept = {row.uuid for row in rows}
        for uuid in [u for u in cache if u not in kept]:
            del cache[uuid]
    return rows


# Rows worked out so far, by hub (one per portal process and event loop), by uuid.
_ROWS: dict[int, dict[str, InstanceRow]] = {}
_ORDERED: dict[int, OrderedCache[InstanceRow]] = {}


def ordered(hub: Hub, namespaces: Namespaces, everything: bool,
            query: Query) -> Ordered[InstanceRow]:
    """The rows that match the query, in its order, and the list's controls.
    Kept while nothing in the mirror changed (OrderedCache), so paging
    through a list, reloading it, or many people looking at it sort it once."""
    listing = listing_for(everything)
    cache = _ORDERED.setdefault(id(hub), OrderedCache())
    key = (everything, namespaces, query.q, query.filters, query.sort)
    version = hub.mirror.revision
    found = cache.get(key, version)
    if found is None:
        rows = rows_in_scope(hub, namespaces)
        found = Ordered(version, listing.ordered(rows, query), len(rows),
                        listing.controls(rows, query))
        cache.put(key, found)
    return found


def ordered_page(hub: Hub, namespaces: Namespaces, everything: bool,
                 query: Query) -> tuple[Page[InstanceRow], dict[str, Any]]:
    """The query's page, and the list's controls."""
    found = ordered(hub, namespaces, everything, query)
    page = listing_for(everything).cut(found.rows, found.in_scope, query)
    controls = {**found.controls, "per_page": page.query.per_page,
                "errors": page.query.errors}
    return page, controls
