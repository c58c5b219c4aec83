"""What the portal and the node agents agree on about consoles.

A console path runs browser <-> portal <-> the agent of the instance's node
<-> the domain. The portal decides who may open what; the agent trusts only
a grant the portal signed with the cluster secret (``cloudstate.signing``),
bound to the node, the exact request path and method, and used once. The
websocket close codes below travel back along the path, so the page can
tell "ended by an administrator" from "the network dropped".
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudstate.model import Record

KINDS = ("serial", "vnc")
# The console log's ``length`` query asking for all of it (Shaken Fist's -1).
WHOLE_LOG = "all"
# What an agent grant is for, as the signing purpose: a token for one never
# passes as the other.
AGENT_GRANT_PURPOSE = "agent-request"
# A grant only has to survive the hop from portal to agent.
AGENT_GRANT_TTL = 30.0

# Websocket close codes (4000-4999 are the application's own).
CLOSE_ENDED_BY_ADMIN = 4000
CLOSE_IDLE = 4001
CLOSE_TOO_SLOW = 4002
CLOSE_REFUSED = 4003  # no, a used, an expired or a mismatched ticket
CLOSE_NOT_FOUND = 4004
CLOSE_LIMIT = 4008
CLOSE_NOT_RUNNING = 4009
CLOSE_CONSOLE_GONE = 4010  # the guest stopped, or libvirt closed the console
CLOSE_AGENT_UNREACHABLE = 4011
CLOSE_PROTOCOL = 4012
# The person's access changed (demoted, removed, disabled, logged out): the
# page reconnects, and gets a read-only console, or a refusal.
CLOSE_ACCESS_CHANGED = 4013
# Codes after which a page should not reconnect by itself.
FINAL_CLOSE_CODES = frozenset({
    CLOSE_ENDED_BY_ADMIN, CLOSE_IDLE, CLOSE_REFUSED, CLOSE_NOT_FOUND, CLOSE_LIMIT,
    CLOSE_NOT_RUNNING, CLOSE_PROTOCOL,
})


def agent_path(kind: str, uuid: str) -> str:
    """The agent's websocket route for a console."""
    return f"/consoles/{kind}/{uuid}"


def consolelog_path(uuid: str) -> str:
    """The agent's route for an instance's serial log (GET tail, DELETE clear)."""
    return f"/consolelogs/{uuid}"


def new_session_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class ConsoleSession(Record):
    """A console someone has open, as the admin page lists it."""

    id: str
    user_id: int
    username: str
    instance: str
    instance_name: str
    namespace: str
    kind: str
    node: str
    read_only: bool
    started_at: float
    # Where it is served: a portal process (host:pid), for the operator.
    portal: str = ""
    slot: int = 0
    bytes_to_browser: int = 0
    bytes_from_browser: int = 0
    updated_at: float = 0.0

    @property
    def bytes_total(self) -> int:
        return self.bytes_to_browser + self.bytes_from_browser


def grant_claims(
    *, node: str, method: str, path: str, query: Mapping[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """The claims of an agent grant: bound to one node, method, path and
    query (a grant to read 10 bytes of a log can't be used to read all of
    it), and carrying a unique id so the agent accepts it once."""
    return {"node": node, "method": method, "path": path, "query": query_claim(query or {}),
            "jti": secrets.token_hex(12), **extra}


def query_claim(query: Mapping[str, str]) -> list[list[str]]:
    """A query string as a grant states it: its decoded pairs, sorted, so
    the encoding on the wire does not matter."""
    return sorted([str(key), str(value)] for key, value in query.items())
