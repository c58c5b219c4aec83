"""Names a network's DNS answers beyond its instances' (Shaken Fist's
extra DNS entries): ``name -> address``, kept on the network's desired
record; the network node's dnsmasq serves them with the instances' names."""

from __future__ import annotations

import ipaddress
from typing import Any

from cloudstate import netvalidation, validation
from cloudstate.model import NetworkSpec
from cloudstate.validation import ValidationError
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, networks
from portal.cloud.errors import NotFound, NotReady
from portal.cloud.networks import NetworkRecord

KIND = ObjectKind.NETWORK
MAX_ENTRIES = netvalidation.MAX_DNS_ENTRIES


def dns_address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValidationError("value", f"{value!r} is not an IP address") from None


def _serving(record: NetworkRecord) -> None:
    if not record.spec.provide_dns:
        raise NotReady(f"network {record.spec.name} does not provide DNS")


async def set_entry(actor: Actor, record: NetworkRecord, name: Any, value: Any) -> NetworkSpec:
    spec = record.spec
    async with changes.changing(actor, AuditAction.SET_DNS, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name,
                                detail=str(name)[:200]):
        _serving(record)
        name, value = validation.dns_name(name), dns_address(value)

        def change(current: NetworkRecord) -> NetworkSpec:
            entries = {**current.spec.dns_entries, name: value}
            if len(entries) > MAX_ENTRIES:
                raise ValidationError("name", f"a network may have at most {MAX_ENTRIES} "
                                              "DNS entries")
            return current.spec.replace(dns_entries=entries)

        updated = await networks.update(record, change)
    await changes.event(actor, KIND, record.uuid, f"DNS entry {name} -> {value} set",
                        operation=AuditAction.SET_DNS, name=name, value=value)
    return updated.spec


async def delete_entry(actor: Actor, record: NetworkRecord, name: Any) -> NetworkSpec:
    spec = record.spec
    async with changes.changing(actor, AuditAction.DELETE_DNS, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name,
                                detail=str(name)[:200]):
        _serving(record)
        name = validation.dns_name(name)

        def change(current: NetworkRecord) -> NetworkSpec:
            if name not in current.spec.dns_entries:
                raise NotFound(f"network {current.spec.name} has no DNS entry {name}")
            return current.spec.replace(dns_entries={
                key: value for key, value in current.spec.dns_entries.items() if key != name})

        updated = await networks.update(record, change)
    await changes.event(actor, KIND, record.uuid, f"DNS entry {name} deleted",
                        operation=AuditAction.DELETE_DNS, name=name)
    return updated.spec
