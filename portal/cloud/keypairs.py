"""Keypairs: ssh public keys a namespace keeps, to put into new instances.

Each is checked (cloudstate.sshkeys) and stored with its fingerprint; its
name is unique within its namespace, held by a name key written in the same
etcd transaction as the record, so two creates can't both take a name.
"""

from __future__ import annotations

import re
import time
import uuid as uuidlib

from cloudstate import sshkeys, validation
from cloudstate.etcd import Compare, Delete, Put
from cloudstate.model import Keypair
from cloudstate.validation import shown
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.accounts.namespaces import require_open
from portal.cloud import changes, ownership, store
from portal.cloud.errors import Conflict, NotFound

Namespaces = frozenset[str] | None

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,62}")
# Longer than any public key (an RSA key of 16384 bits is about 2.8 KB).
MAX_KEY_TEXT = 16 * 1024
KIND = ObjectKind.KEYPAIR


def validate_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise validation.ValidationError(
            "name", f"{shown(value)} is not a valid keypair name: use 1-63 letters, digits, "
            "dots, hyphens, underscores and @, starting with a letter or digit")
    return value


def validate_key(value: object) -> sshkeys.PublicKey:
    try:
        return sshkeys.parse(value)  # type: ignore[arg-type]
    except sshkeys.BadKey as exc:
        raise validation.ValidationError("public_key", str(exc)) from exc


async def create(actor: Actor, name: object, public_key: object, namespace: str) -> Keypair:
    async with changes.changing(actor, AuditAction.CREATE, KIND, namespace=namespace,
                                object_name=str(name or "")[:255],
                                what=f"namespace {namespace}") as entry:
        await require_open(namespace)
        keypair = await _create(name, public_key, namespace)
        entry.object_id = keypair.uuid
    return keypair


async def _create(name: object, public_key: object, namespace: str) -> Keypair:
    name = validate_name(name)
    key = validate_key(public_key)
    etcd, keys = store.etcd(), store.keys()
    keypair = Keypair(uuid=str(uuidlib.uuid4()), name=name, namespace=namespace,
                      public_key=key.line, fingerprint=key.fingerprint, created_at=time.time())
    name_key = keys.keypair_name(namespace, name)
    result = await etcd.txn(
        [Compare.absent(name_key)],
        [Put(keys.keypair(keypair.uuid), keypair.to_json()), Put(name_key, keypair.uuid)],
    )
    if not result.succeeded:
        raise Conflict(f"a keypair named {name} already exists in namespace {namespace}")
    return keypair


async def list_keypairs(namespaces: Namespaces) -> list[Keypair]:
    kvs, _ = await store.etcd().get_prefix(store.keys().keypairs)
    found = [Keypair.from_json(kv.value) for kv in kvs]
    return sorted((k for k in found if namespaces is None or k.namespace in namespaces),
                  key=lambda k: (k.namespace, k.name))


async def get(ref: str, namespaces: Namespaces) -> Keypair:
    """By UUID or by name (names are unique per namespace)."""
    etcd, keys = store.etcd(), store.keys()
    try:
        uuid = str(uuidlib.UUID(ref))
    except ValueError:
        matches = [k for k in await list_keypairs(namespaces) if k.name == ref]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise validation.ValidationError(
                "keypair", f"{len(matches)} keypairs in different namespaces are named "
                f"{shown(ref)}: use the UUID") from None
        raise NotFound(f"keypair {ref} not found") from None
    kv = await etcd.get(keys.keypair(uuid))
    keypair = None if kv is None else Keypair.from_json(kv.value)
    if keypair is None or (namespaces is not None and keypair.namespace not in namespaces):
        raise NotFound(f"keypair {ref} not found")
    return keypair


async def find(name: str, namespace: str) -> Keypair:
    """The namespace's keypair called ``name``, for a new instance; a 400 if none."""
    kv = await store.etcd().get(store.keys().keypair_name(namespace, name))
    if kv is not None:
        found = await store.etcd().get(store.keys().keypair(kv.value.decode()))
        if found is not None:
            return Keypair.from_json(found.value)
    raise validation.ValidationError(
        "keypair", f"there is no keypair named {shown(name)} in namespace {namespace}")


async def delete(actor: Actor, keypair: Keypair) -> None:
    """Instances made with the key keep it; only the namespace's copy goes."""
    keys = store.keys()
    async with changes.changing(actor, AuditAction.DELETE, KIND, namespace=keypair.namespace,
                                object_id=keypair.uuid, object_name=keypair.name,
                                what=f"keypair {keypair.name}"):
        await store.etcd().txn([], [Delete(keys.keypair(keypair.uuid)),
                                    Delete(keys.keypair_name(keypair.namespace, keypair.name))])


async def _owned_keypairs(namespace: str) -> list[str]:
    return [k.name for k in await list_keypairs(frozenset({namespace}))]


ownership.register("keypairs", _owned_keypairs)
