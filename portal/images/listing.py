"""The images list: what a row shows to whom, and how the list searches,
filters and sorts (portal.listing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from portal.accounts.access import Access
from portal.accounts.models import SYSTEM_NAMESPACE
from portal.cloud.catalogue import ArtifactRecord
from portal.listing import Filter, Listing, Sort


@dataclass(frozen=True)
class ImageRow:
    record: ArtifactRecord
    used_by: tuple[str, ...]  # the instances using it that the person may see
    source: str  # its source as the person may see it

    @property
    def uuid(self) -> str:
        return self.record.uuid


def source_shown(record: ArtifactRecord, access: Access) -> str:
    """Where it came from: a URL as given; a file on the cloud's own servers
    (the demo image) only for members of system, who run them."""
    source = record.spec.source_url or ""
    if source.startswith("file:") and not access.can_read(SYSTEM_NAMESPACE):
        return "a file on the cloud's own servers"
    return source


def rows_for(records: Sequence[ArtifactRecord], access: Access) -> list[ImageRow]:
    return [ImageRow(record, record.used_by_in(access.visible), source_shown(record, access))
            for record in records]


def _choices(values: set[str]) -> list[tuple[str, str]]:
    return [(value, value) for value in sorted(values)]


IMAGES: Listing[ImageRow] = Listing(
    sorts={
        "name": Sort("Name", lambda row: row.record.spec.name.casefold()),
        "type": Sort("Type", lambda row: (row.record.spec.type, row.record.spec.name)),
        "state": Sort("State", lambda row: (row.record.state, row.record.spec.name)),
        "size": Sort("Size", lambda row: (row.record.newest.facts.size or 0)
                     if row.record.newest else 0, up="smallest first", down="largest first"),
        "created": Sort("Created", lambda row: row.record.spec.created_at,
                        up="oldest first", down="newest first"),
    },
    default_sort="name",
    filters={
        "type": Filter("Type", lambda row, value: row.record.spec.type == value,
                       lambda rows: _choices({row.record.spec.type for row in rows})),
        "state": Filter("State", lambda row, value: row.record.state == value,
                        lambda rows: _choices({row.record.state for row in rows})),
    },
    search=lambda row, term: (term in row.record.spec.name.casefold()
                              or row.uuid.startswith(term) or term in row.source.casefold()),
    tie=lambda row: row.uuid,
    search_help="A name, the start of a UUID, or part of where it came from.",
)
