"""The networks list: how it searches, filters and sorts (portal.listing)."""

from __future__ import annotations

import ipaddress

from portal.cloud.networks import NetworkRecord
from portal.listing import Filter, Listing, Sort


def _range_key(record: NetworkRecord) -> tuple[int, int]:
    network = ipaddress.ip_network(record.spec.netblock, strict=False)
    return int(network.network_address), network.prefixlen


NETWORKS: Listing[NetworkRecord] = Listing(
    sorts={
        "name": Sort("Name", lambda r: r.spec.name.casefold()),
        "range": Sort("Range", _range_key, up="lowest first", down="highest first"),
        "state": Sort("State", lambda r: (r.state, r.spec.name)),
        "created": Sort("Created", lambda r: r.spec.created_at,
                        up="oldest first", down="newest first"),
    },
    default_sort="name",
    filters={
        "state": Filter("State", lambda r, value: r.state == value,
                        lambda rows: [(s, s) for s in sorted({r.state for r in rows})]),
    },
    search=lambda r, term: (term in r.spec.name.casefold() or r.uuid.startswith(term)
                            or r.spec.netblock.startswith(term)),
    tie=lambda r: r.uuid,
    search_help="A name, the start of a UUID or of a range.",
)
