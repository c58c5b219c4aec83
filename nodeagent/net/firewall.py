"""This node's security group tables in the kernel, and the tracked
connections they judge.

``apply`` makes both tables exactly what a Policy renders to, in one
``nft -f`` (all or nothing: a refused batch leaves the tables as they
were); the digest in the tables' comment makes an unchanged policy cost one
``nft list``, and a change is applied as what differs from the tables last
applied (``filterrules.changes``: a remote group's member coming or going
rewrites set elements and its own port's chains, no other rule); after a
start, what the kernel holds is not known in detail, and a change replaces
the tables whole.
``cut`` then ends the tracked connections the policy no longer allows, and
only those. Everything runs in our network namespace, or in the
one named (the tests' pseudo-hypervisors).

The calls block (subprocesses); callers run them in a worker thread while
holding the kernel lock.
"""

from __future__ import annotations

import logging
import re

from nodeagent.net import conntrack, filterrules
from nodeagent.net.nftables import NftError, nft
from nodeagent.net.policy import Policy

log = logging.getLogger(__name__)

_ZONE_ENTRY = re.compile(r'"([^"]+)"\s*:\s*(\d+)')


class Firewall:
    def __init__(self, table: str, tag: str, netns: str | None = None):
        self.names = filterrules.Names(table, tag)
        self.netns = netns
        self._tables: filterrules.Tables | None = None  # as last applied

    @property
    def table(self) -> str:
        return self.names.table

    def _nft(self, *args: str, stdin: str | None = None) -> str:
        result = nft(*args, stdin=stdin, netns=self.netns)
        if result.returncode != 0:
            raise NftError(result.stderr.strip() or f"nft {' '.join(args)} failed")
        return result.stdout

    def _listed(self, family: str, chain: str | None = None) -> str | None:
        """``nft list`` of one of our tables (or one chain of it); None if absent."""
        what = ("chain", family, self.table, chain) if chain else ("table", family, self.table)
        result = nft("list", *what, netns=self.netns)
        return result.stdout if result.returncode == 0 else None

    def applied_digest(self) -> str:
        """The digest of what the kernel holds ("" if the tables are not both there)."""
        listed = self._listed("bridge", filterrules.DIGEST_CHAIN)
        if listed is None or self._listed("inet") is None:
            return ""
        return filterrules.digest_of(listed)

    def apply(self, policy: Policy) -> bool:
        """Make the tables render ``policy``; False if they already did."""
        tables = filterrules.build(policy, self.names)
        applied = self.applied_digest()
        if applied == tables.digest:
            self._tables = tables
            return False
        full = filterrules.full(tables, self.table)
        if self._tables is not None and applied == self._tables.digest:
            try:
                self._nft("-f", "-", stdin=filterrules.changes(self._tables, tables, self.table))
            except NftError as exc:
                # Nothing of it was applied: the whole tables, in one go, then.
                log.warning("nft refused the changes to %s (%s); replacing the tables whole",
                            self.table, exc)
            else:
                self._tables = tables
                return True
        try:
            self._nft("-f", "-", stdin=full)
        except NftError as exc:
            raise NftError(f"nft refused the security group rules: {exc}") from exc
        self._tables = tables
        return True

    def remove(self) -> bool:
        """Both tables gone; False if there were none."""
        if self._listed("bridge") is None and self._listed("inet") is None:
            return False
        self._nft("-f", "-", stdin=filterrules.removal(self.table))
        self._tables = None
        return True

    def zones(self) -> dict[str, int]:
        """bridge -> conntrack zone, as the kernel's tables have them now."""
        listed = self._listed("inet", "zones")
        return {bridge: int(zone) for bridge, zone in _ZONE_ENTRY.findall(listed or "")}

    def cut(self, policy: Policy) -> int:
        """End each tracked connection of the policy's zones that it no
        longer allows, or that involves an address no interface has any
        more; returns how many ended."""
        ended = 0
        for segment in policy.segments:
            for flow in conntrack.flows(segment.zone, self.netns):
                if (policy.stale(flow) or not policy.allows(flow)) \
                        and conntrack.delete(flow, self.netns):
                    ended += 1
        return ended

    def flush(self, zone: int) -> int:
        """End every connection of a zone no network of ours uses any more."""
        return conntrack.flush(zone, self.netns)
