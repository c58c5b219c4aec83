"""Join tokens: how a new machine proves it may join the cloud.

A system admin asks the portal for one (the Nodes page, ``POST
/api/join-tokens``). It is ``<id>.<secret>``: the id names the record in etcd
(``<prefix>/jointokens/<id>``), the secret is shown once and kept only as its
SHA-256, beside the expiry. The new machine hands the token over with what
the deploy machine needs to reach it (its name, address and SSH host key);
the portal checks the secret in constant time and marks the record used in
one etcd transaction (``JoinToken.redeemed``), so of two machines with one
token exactly one gets in. The deploy machine (``sfcloud-deploy
accept-joins``) then adds the node with the same play as ``add-node`` and
writes how that went into the same record (``join_state``).

Nothing here runs a command: the record's fields are checked here and by
``deploy.cloudconfig`` before anything uses them, and only ever travel as
data (argument lists, files).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass

from cloudstate.model import Record
from cloudstate.validation import ValidationError

# What a token's record is, from the portal's side.
UNUSED, USED, REVOKED, EXPIRED = "unused", "used", "revoked", "expired"
# How the join went, from the deploy machine's side (once USED).
PENDING, JOINING, JOINED, FAILED = "pending", "joining", "joined", "failed"

ID_BYTES = 6  # 12 hex digits: names the record, is no secret
SECRET_BYTES = 32
_TOKEN = re.compile(r"([0-9a-f]{12})\.([A-Za-z0-9_-]{43})")
_TOKEN_ID = re.compile(r"[0-9a-f]{12}")
# A node's name: a host name's label (deploy.cloudconfig checks it again).
_NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# An SSH host key as a .pub file holds it: type, base64, optional comment (dropped).
_HOST_KEY = re.compile(r"(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|"
                       r"ecdsa-sha2-nistp521|ssh-rsa) ([A-Za-z0-9+/]{40,2000}={0,2})")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Made:
    """A token just made: the whole token (shown once) and its record."""

    token: str
    record: JoinToken


@dataclass(frozen=True)
class JoinToken(Record):
    id: str
    secret_sha256: str
    created_at: float
    expires_at: float
    created_by: str
    etcd: bool = False  # the new node also becomes an etcd member
    state: str = UNUSED
    ended_at: float = 0.0  # when it was used, revoked or seen expired
    # The join, once the token was used: who came, and how it went.
    node: str = ""
    address: str = ""
    host_key: str = ""
    join_state: str = ""
    message: str = ""

    def current_state(self, now: float) -> str:
        """Its state now: an unused token past its expiry is expired."""
        if self.state == UNUSED and now >= self.expires_at:
            return EXPIRED
        return self.state

    def matches(self, secret: str) -> bool:
        """The secret's hash against the kept one, in constant time."""
        return hmac.compare_digest(digest(secret), self.secret_sha256)

    def redeemed(self, *, node: str, address: str, host_key: str, now: float) -> JoinToken:
        return self.replace(state=USED, ended_at=now, node=node, address=address,
                            host_key=host_key, join_state=PENDING, message="")


def make(*, created_by: str, ttl: float, etcd: bool, now: float | None = None) -> Made:
    now = time.time() if now is None else now
    token_id = secrets.token_hex(ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    record = JoinToken(id=token_id, secret_sha256=digest(secret), created_at=now,
                       expires_at=now + ttl, created_by=created_by, etcd=etcd)
    return Made(token=f"{token_id}.{secret}", record=record)


def parse(token: object) -> tuple[str, str]:
    """(id, secret) of a token as typed; ValidationError when it can't be one."""
    if not isinstance(token, str):
        raise ValidationError("token", "give the join token the Nodes page printed")
    found = _TOKEN.fullmatch(token.strip())
    if found is None:
        raise ValidationError("token", "not a join token (it looks like 0123abcd4567.<secret>)")
    return found.group(1), found.group(2)


def valid_token_id(token_id: str) -> bool:
    return _TOKEN_ID.fullmatch(token_id) is not None


@dataclass(frozen=True)
class Joiner:
    """What a machine that joins says about itself, checked."""

    node: str
    address: str
    host_key: str


def joiner(body: dict) -> Joiner:
    """The machine's name, address and SSH host key from a join request."""
    name = body.get("name")
    if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
        raise ValidationError("name", "a node's name is a host name: lower-case letters, "
                              "digits and '-', at most 63")
    address = body.get("address")
    try:
        parsed = ipaddress.ip_address(address if isinstance(address, str) else "")
    except ValueError:
        raise ValidationError("address", "the machine's IP address on the network between "
                              "the nodes") from None
    if parsed.is_unspecified or parsed.is_multicast:
        raise ValidationError("address", f"{address} can't be a node's address")
    key = body.get("host_key")
    # One line: a .pub file's, perhaps with its comment (dropped).
    words = key.split() if isinstance(key, str) and len(key.strip().splitlines()) == 1 else []
    found = _HOST_KEY.fullmatch(" ".join(words[:2])) if len(words) >= 2 else None
    if found is None:
        raise ValidationError("host_key", "the machine's SSH host key, as its "
                              "/etc/ssh/ssh_host_*_key.pub holds it")
    return Joiner(node=name, address=str(parsed), host_key=found.group(0))


def ca_fingerprint(der: bytes) -> str:
    """The pin a joining machine checks the CA against: SHA-256 of its DER."""
    return hashlib.sha256(der).hexdigest()
