"""Address management in etcd: addresses, MACs and VXLAN ids that never collide.

Every reservation is a key that is created only if absent, inside the same
etcd transaction that writes what uses it (an instance and its interfaces, a
network, a float). Concurrent writers may pick the same candidate; etcd lets
exactly one of them commit and the others pick again from a fresh read, so
uniqueness never depends on a lock or on timing.

Candidates are chosen at random among the free addresses rather than lowest
first: writers racing for the same pool then rarely pick the same one, and
an address just released is not the first to be handed out again.

Releasing is not done here. An address is freed only by whoever tore down
what used it (the agent that destroyed the instance, the network node that
removed a floating address's NAT), so an address is never given to a new
guest while an old one may still hold it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cloudstate.etcd import Compare, Delete, Etcd, Put, TxnResult
from cloudstate.keys import FLOATING_POOL, Keys
from cloudstate.model import AddressReservation

MAX_VXID = 2**24 - 1
_RANDOM_TRIES = 32
_rng = random.SystemRandom()


class PoolExhausted(Exception):
    """No free address is left in the pool (Shaken Fist's 507)."""


class AddressTaken(Exception):
    """The address asked for is already reserved (409)."""


class TooMuchContention(Exception):
    """Others kept winning the race for the same keys; the caller may retry."""


@dataclass(frozen=True)
class Pool:
    """The addresses of one network (or of the floating network) and those
    no one may reserve because of what they are."""

    name: str  # a network's uuid, or FLOATING_POOL
    network: ipaddress.IPv4Network
    # Addresses unavailable by rule, with why: the network and broadcast
    # addresses, the router (a network's first host, or the floating
    # network's upstream router).
    by_rule: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_network(cls, uuid: str, netblock: str) -> Pool:
        network = ipaddress.IPv4Network(netblock)
        return cls(uuid, network, {
            str(network.network_address): "network",
            str(network.broadcast_address): "broadcast",
            str(network.network_address + 1): "gateway",
        })

    @classmethod
    def floating(cls, network: ipaddress.IPv4Network, router: str) -> Pool:
        return cls(FLOATING_POOL, network, {
            str(network.network_address): "network",
            str(network.broadcast_address): "broadcast",
            router: "gateway",
        })

    @property
    def capacity(self) -> int:
        return self.network.num_addresses - len(self.by_rule)

    def choose(self, taken: set[str], count: int = 1) -> list[str]:
        """``count`` distinct free addresses, at random; PoolExhausted if fewer are free."""
        unavailable = taken | self.by_rule.keys()
        first = int(self.network.network_address)
        size = self.network.num_addresses
        chosen: list[str] = []
        for _ in range(_RANDOM_TRIES * count):
            if len(chosen) == count:
                return chosen
            candidate = str(ipaddress.IPv4Address(first + _rng.randrange(size)))
            if candidate not in unavailable and candidate not in chosen:
                chosen.append(candidate)
        # Nearly full: walk every address once, from a random start.
        start = _rng.randrange(size)
        for step in range(size):
            if len(chosen) == count:
                break
            candidate = str(ipaddress.IPv4Address(first + (start + step) % size))
            if candidate not in unavailable and candidate not in chosen:
                chosen.append(candidate)
        if len(chosen) < count:
            raise PoolExhausted(
                f"no free address is left in {self.network}"
                + (" (the floating network)" if self.name == FLOATING_POOL else "")
            )
        return chosen


def random_mac() -> str:
    """A locally administered unicast MAC, as Shaken Fist makes them."""
    return "02:00:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))


def random_vxid() -> int:
    return _rng.randrange(1, MAX_VXID + 1)


# --- reading ---------------------------------------------------------------------------


async def taken(etcd: Etcd, keys: Keys, pool: str) -> set[str]:
    """The addresses reserved in ``pool`` right now."""
    prefix = keys.addresses(pool)
    kvs, _ = await etcd.get_prefix(prefix)
    return {kv.key[len(prefix):] for kv in kvs}


async def reservations(etcd: Etcd, keys: Keys, pool: str) -> list[AddressReservation]:
    kvs, _ = await etcd.get_prefix(keys.addresses(pool))
    return [AddressReservation.from_json(kv.value) for kv in kvs]


# --- claiming (the parts of a caller's transaction) --------------------------------------


def claim_address(keys: Keys, pool: str, reservation: AddressReservation) -> tuple[Compare, Put]:
    key = keys.address(pool, reservation.address)
    return Compare.absent(key), Put(key, reservation.to_json())


def claim_mac(keys: Keys, mac: str, interface_uuid: str) -> tuple[Compare, Put]:
    return Compare.absent(keys.mac(mac)), Put(keys.mac(mac), interface_uuid)


def claim_vxid(keys: Keys, vxid: int, network_uuid: str) -> tuple[Compare, Put]:
    return Compare.absent(keys.vxlan(vxid)), Put(keys.vxlan(vxid), network_uuid)


def release_address(keys: Keys, pool: str, address: str) -> Delete:
    return Delete(keys.address(pool, address))


# --- a whole allocation ------------------------------------------------------------------

Build = Callable[[str], Awaitable[tuple[list[Compare], list[Put | Delete]]]]


async def allocate(
    etcd: Etcd,
    keys: Keys,
    pool: Pool,
    reservation: Callable[[str], AddressReservation],
    *,
    requested: str | None = None,
    build: Build | None = None,
    attempts: int = 64,
) -> tuple[str, TxnResult]:
    """Reserve one address of ``pool`` (``requested``, or any free one) and
    commit it together with what ``build(address)`` adds to the transaction.

    ``build`` reads whatever its own comparisons need afresh on each call, so
    a lost race on either the address or the caller's keys is simply retried.
    Raises AddressTaken, PoolExhausted or TooMuchContention.
    """
    for attempt in range(attempts):
        in_use = await taken(etcd, keys, pool.name)
        if requested is not None:
            if requested in in_use or requested in pool.by_rule:
                raise AddressTaken(f"{requested} is already in use")
            address = requested
        else:
            address = pool.choose(in_use)[0]
        compares, ops = await build(address) if build else ([], [])
        compare, put = claim_address(keys, pool.name, reservation(address))
        result = await etcd.txn([compare, *compares], [put, *ops])
        if result.succeeded:
            return address, result
        if attempt >= 4:
            # Many writers on one pool: spread out rather than retry in step.
            await _pause(attempt)
    raise TooMuchContention(f"could not reserve an address in {pool.network}; try again")


async def _pause(attempt: int) -> None:
    await asyncio.sleep(_rng.uniform(0, min(0.002 * attempt, 0.05)))
