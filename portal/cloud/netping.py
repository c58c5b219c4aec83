"""Ping an address from a network's router (Shaken Fist's ``network
ping``): the network node's agent runs it inside the network's namespace
and the caller gets its output, as Shaken Fist's client prints it."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from cloudstate import netping, states
from cloudstate.validation import ValidationError
from cloudstate.vocabulary import ObjectKind
from portal.accounts.actor import Actor
from portal.accounts.models import AuditAction
from portal.cloud import changes, store
from portal.cloud.errors import NotReady
from portal.cloud.networks import NetworkRecord
from portal.consoles import agent

KIND = ObjectKind.NETWORK


async def ping(actor: Actor, record: NetworkRecord, address: str) -> dict[str, Any]:
    """``{"stdout", "stderr"}`` of the ping, strings (Shaken Fist's 0.8 server
    sends lists, which its own 0.8.3 client can't print)."""
    spec = record.spec
    async with changes.changing(actor, AuditAction.PING, KIND, namespace=spec.namespace,
                                object_id=record.uuid, object_name=spec.name,
                                detail=str(address)[:64]):
        target = _inside(address, record)
        if record.state != states.CREATED:
            raise NotReady(f"network {spec.name} is {record.state}, not created")
        node = await _network_node()
        body = await agent.request(node, "GET", netping.ping_path(record.uuid, str(target)))
    result = json.loads(body)
    return {"stdout": result.get("stdout", ""), "stderr": result.get("stderr", "")}


def _inside(address: str, record: NetworkRecord) -> ipaddress.IPv4Address:
    try:
        target = ipaddress.IPv4Address(address)
    except ValueError:
        raise ValidationError("address", f"{address!r} is not an IPv4 address") from None
    if target not in record.spec.network:
        raise ValidationError("address", f"{target} is outside the network's range "
                                         f"{record.spec.netblock}: ping only reaches the network")
    return target


async def _network_node() -> str:
    kv = await store.etcd().get(store.keys().network_node_role)
    if kv is None:
        raise agent.AgentUnavailable("there is no network node: no agent has taken the role")
    return kv.value.decode()
