"""Join tokens, as the portal keeps them (see cloudstate.jointokens): a system
admin makes, lists and revokes them; a new machine redeems one (the join
listener, portal.nodes.joinlistener) and then asks how its join goes.

Every change is audited through changes.changing: made and revoked by the
admin, used by the machine (with the portal's authority, the machine's
address and name in the row), and expired when the portal first sees an
unused token past its expiry. Records that ended a week ago are forgotten.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import ssl
import time
from dataclasses import dataclass

from django.conf import settings

from cloudstate import jointokens, tls
from cloudstate.config import REPO_ROOT
from cloudstate.etcd import Compare, Delete, KeyValue, Put
from cloudstate.jointokens import JoinToken
from cloudstate.vocabulary import ObjectKind
from portal import tlslistener
from portal.accounts.actor import Actor
from portal.accounts.models import SYSTEM_NAMESPACE, AuditAction
from portal.cloud import changes, store
from portal.cloud.errors import BadRequest, Conflict, Forbidden, NotFound

KIND = ObjectKind.NODE  # a token is about a node to come
FORGET_AFTER = 7 * 24 * 3600


class Refused(Forbidden):
    """A token that does not let anyone in (unknown, forged, used, revoked,
    expired): 403, the same answer whichever, so nobody learns which ids
    exist from it."""

    def __init__(self, why: str = "this join token is not valid: it is unknown, used, "
                                  "revoked or expired; ask for a new one on the Nodes page"):
        super().__init__(why)


# The machine's half of a join, standard library only: the join listener
# serves this file to a bare machine, whose bootstrap command checks it by its
# SHA-256 before running it (the portal and the deploy ship in one release).
JOIN_SCRIPT = REPO_ROOT / "deploy" / "joinclient.py"
JOIN_SCRIPT_NAME = "sfcloud-join.py"


@dataclass(frozen=True)
class Invitation:
    """What the new machine is told: the commands, with the CA's pin."""

    command: str  # where sfcloud-deploy is installed
    bootstrap: str  # on a bare Debian machine: fetch the join script, check it, run it
    ca_sha256: str
    url: str


@functools.cache
def join_script() -> bytes:
    return JOIN_SCRIPT.read_bytes()


def invitation(token: str) -> Invitation:
    """The one command to run, as root, on the new machine. Shown to a
    person to copy: no shell runs it here."""
    der = ssl.PEM_cert_to_DER_cert((settings.CLOUD.pki_dir / tls.CA_CERT).read_text())
    pin = jointokens.ca_fingerprint(der)
    host, port = tlslistener.host_and_port(settings.PORTAL_JOIN_ADDRESS)
    url = f"https://{f'[{host}]' if ':' in host else host}:{port}"
    arguments = f"{url} --token {token} --ca-sha256 {pin}"
    # curl -k is safe here: what it fetched runs only if its SHA-256 is the
    # one this page printed, and the script then trusts nothing but the pin.
    script = hashlib.sha256(join_script()).hexdigest()
    bootstrap = (f"curl -fsSko {JOIN_SCRIPT_NAME} {url}/join/{JOIN_SCRIPT_NAME} && "
                 f"echo '{script}  {JOIN_SCRIPT_NAME}' | sha256sum -c --quiet && "
                 f"python3 {JOIN_SCRIPT_NAME} {arguments}")
    return Invitation(command=f"sfcloud-deploy join {arguments}", bootstrap=bootstrap,
                      ca_sha256=pin, url=url)


def _what(token_id: str) -> str:
    return f"join token {token_id}"


def _require_admin(actor: Actor) -> None:
    if not actor.is_system:
        raise Forbidden("only the system namespace's admins may see join tokens")
    actor.require_system_admin("make, see or revoke join tokens")


async def _kvs() -> list[KeyValue]:
    kvs, _ = await store.etcd().get_prefix(store.keys().join_tokens)
    return kvs


async def create(actor: Actor, wanted: Asked) -> jointokens.Made:
    """A new token; the whole token is in the answer and nowhere else."""
    _require_admin(actor)
    etcd = wanted.etcd
    ttl = settings.JOIN_TOKEN_TTL if wanted.ttl is None else wanted.ttl
    made = jointokens.make(created_by=actor.name, ttl=ttl, etcd=etcd)
    record = made.record
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=SYSTEM_NAMESPACE,
                                object_id=record.id, object_name=_what(record.id),
                                detail=f"join token{', etcd member' if etcd else ''}, valid "
                                       f"{ttl // 60} min", what=_what(record.id)):
        key = store.keys().join_token(record.id)
        result = await store.etcd().txn([Compare.absent(key)], [Put(key, record.to_json())])
        if not result.succeeded:  # 48 random bits met an existing id
            raise Conflict("a join token with that id exists; ask again")
    return made


async def list_tokens(actor: Actor) -> list[JoinToken]:
    """Every token not yet forgotten, newest first; expiries noticed on the way."""
    _require_admin(actor)
    return await _swept()


async def _swept() -> list[JoinToken]:
    now = time.time()
    kept = []
    for kv in await _kvs():
        record = JoinToken.from_json(kv.value)
        if record.current_state(now) == jointokens.EXPIRED and record.state == jointokens.UNUSED:
            record = await _expire(record, kv.mod_revision, now) or record
        elif record.state != jointokens.UNUSED and record.ended_at + FORGET_AFTER < now \
                and record.join_state not in (jointokens.PENDING, jointokens.JOINING):
            await store.etcd().txn(
                [Compare.unchanged_since(kv.key, kv.mod_revision)], [Delete(kv.key)])
            continue
        kept.append(record)
    return sorted(kept, key=lambda r: (-r.created_at, r.id))


async def _expire(record: JoinToken, revision: int, now: float) -> JoinToken | None:
    """Mark an unused token past its expiry expired, audited once (whichever
    portal process sees it first wins the transaction)."""
    ended = record.replace(state=jointokens.EXPIRED, ended_at=now)
    key = store.keys().join_token(record.id)
    result = await store.etcd().txn([Compare.unchanged_since(key, revision)],
                                    [Put(key, ended.to_json())])
    if not result.succeeded:
        return None
    async with changes.changing(Actor.portal(), AuditAction.EXPIRE, KIND,
                                namespace=SYSTEM_NAMESPACE, object_id=record.id,
                                object_name=_what(record.id), detail="expired unused"):
        pass
    return ended


async def revoke(actor: Actor, token_id: str) -> JoinToken:
    """An unused token can't be used any more."""
    _require_admin(actor)
    if not jointokens.valid_token_id(token_id):
        raise NotFound(f"{_what(token_id)} not found")
    key = store.keys().join_token(token_id)
    async with changes.changing(actor, AuditAction.REVOKE, KIND, namespace=SYSTEM_NAMESPACE,
                                object_id=token_id, object_name=_what(token_id),
                                what=_what(token_id)):
        kv = await store.etcd().get(key)
        if kv is None:
            raise NotFound(f"{_what(token_id)} not found")
        record = JoinToken.from_json(kv.value)
        state = record.current_state(time.time())
        if state != jointokens.UNUSED:
            raise Conflict(f"{_what(token_id)} is {state} already: nothing to revoke")
        ended = record.replace(state=jointokens.REVOKED, ended_at=time.time())
        result = await store.etcd().txn([Compare.unchanged_since(key, kv.mod_revision)],
                                        [Put(key, ended.to_json())])
        if not result.succeeded:
            raise Conflict(f"{_what(token_id)} changed meanwhile (used?); look again")
    return ended


async def _find(token: object) -> tuple[JoinToken, KeyValue]:
    """The record a token names, its secret checked (constant time); Refused
    when there is none or the secret is not its own."""
    token_id, secret = jointokens.parse(token)
    kv = await store.etcd().get(store.keys().join_token(token_id))
    if kv is None:
        # Hash anyway: an unknown id takes as long to refuse as a wrong secret.
        jointokens.digest(secret)
        raise Refused()
    record = JoinToken.from_json(kv.value)
    if not record.matches(secret):
        raise Refused()
    return record, kv


async def redeem(token: object, body: dict, *, peer: str | None) -> tuple[JoinToken, str]:
    """A machine joins with ``token``: the token is used up, in one
    transaction with the join's details, or nothing changes. Answers the
    record and the deploy's SSH public key (for the machine's root)."""
    joining = jointokens.joiner(body)
    record, kv = await _find(token)
    now = time.time()
    if record.current_state(now) != jointokens.UNUSED:
        raise Refused()
    etcd, keys = store.etcd(), store.keys()
    deploy_key, node_kv, (others, _) = await asyncio.gather(
        etcd.get(keys.deploy_ssh_key), etcd.get(keys.node(joining.node)),
        etcd.get_prefix(keys.join_tokens))
    if deploy_key is None:
        raise Conflict("no deploy machine takes joins: run `sfcloud-deploy accept-joins` "
                       "on the machine that keeps the deploy directory")
    if node_kv is not None:
        raise Conflict(f"name: a node named {joining.node} is in the cloud already")
    for other in others:
        seen = JoinToken.from_json(other.value)
        if seen.id != record.id and seen.node == joining.node and \
                seen.join_state in (jointokens.PENDING, jointokens.JOINING):
            raise Conflict(f"name: {joining.node} is joining already")
    used = record.redeemed(node=joining.node, address=joining.address,
                           host_key=joining.host_key, now=now)
    machine = dataclasses.replace(Actor.portal(), address=peer)
    async with changes.changing(machine, AuditAction.JOIN, KIND, namespace=SYSTEM_NAMESPACE,
                                object_id=joining.node, object_name=joining.node,
                                detail=f"{_what(record.id)} used by {joining.node} "
                                       f"({joining.address}{', etcd member' * record.etcd}); "
                                       f"made by {record.created_by}"):
        result = await etcd.txn([Compare.unchanged_since(kv.key, kv.mod_revision)],
                                [Put(kv.key, used.to_json())])
        if not result.succeeded:  # another machine used it a moment ago
            raise Refused()
    return used, deploy_key.value.decode()


async def progress(token: object) -> JoinToken:
    """How the join of a used token goes, for the machine that used it."""
    record, _ = await _find(token)
    if record.state != jointokens.USED:
        raise Refused()
    return record


MIN_TTL, MAX_TTL = 60, 7 * 24 * 3600


@dataclass(frozen=True)
class Asked:
    """What an admin asks of a new token."""

    etcd: bool
    ttl: int | None  # seconds; None: SFCLOUD_JOIN_TOKEN_TTL


def asked(body: dict) -> Asked:
    """``{"etcd": bool, "ttl": seconds}``, both optional, checked."""
    wanted = body.get("etcd", False)
    if not isinstance(wanted, bool):
        raise BadRequest("etcd: true (the new node also becomes an etcd member) or false")
    ttl = body.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int)
                            or not MIN_TTL <= ttl <= MAX_TTL):
        raise BadRequest(f"ttl: seconds the token stays valid, {MIN_TTL} to {MAX_TTL}")
    return Asked(etcd=wanted, ttl=ttl)
