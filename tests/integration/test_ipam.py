"""cloudstate.ipam against a real etcd: concurrent writers never get the same
address, MAC or VXLAN id; a requested address is honoured or refused; a full
pool says so."""

from __future__ import annotations

import asyncio

import pytest

from cloudstate import ipam
from cloudstate.etcd import Compare, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.model import AddressReservation
from deploy.localetcd import LocalEtcd

pytest_plugins = ("tests.support.fixtures_etcd",)
pytestmark = pytest.mark.integration


def reservation(address: str) -> AddressReservation:
    return AddressReservation(address=address, type="instance", user=["interface", address],
                              network_uuid="net")


async def test_concurrent_allocations_are_unique(etcd_server: LocalEtcd, etcd: Etcd,
                                                 etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    pool = ipam.Pool.for_network("net", "10.0.0.0/24")
    # Several clients (separate connections), many writers each.
    clients = [etcd_server.client() for _ in range(4)]
    try:
        results = await asyncio.gather(*(
            ipam.allocate(clients[i % 4], keys, pool, reservation) for i in range(200)
        ))
    finally:
        for client in clients:
            await client.close()
    addresses = [address for address, _ in results]
    assert len(set(addresses)) == 200
    assert await ipam.taken(etcd, keys, "net") == set(addresses)
    assert not set(addresses) & set(pool.by_rule)
    # 253 usable, 200 taken: the rest can be had, then no more.
    rest = [await ipam.allocate(etcd, keys, pool, reservation) for _ in range(53)]
    assert len({address for address, _ in rest} | set(addresses)) == 253
    with pytest.raises(ipam.PoolExhausted, match="no free address is left in 10.0.0.0/24"):
        await ipam.allocate(etcd, keys, pool, reservation)


async def test_requested_address_and_lost_races_of_the_callers_keys(etcd: Etcd,
                                                                    etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    pool = ipam.Pool.for_network("net", "10.0.0.0/29")
    address, _ = await ipam.allocate(etcd, keys, pool, reservation, requested="10.0.0.4")
    assert address == "10.0.0.4"
    with pytest.raises(ipam.AddressTaken):
        await ipam.allocate(etcd, keys, pool, reservation, requested="10.0.0.4")
    with pytest.raises(ipam.AddressTaken):
        await ipam.allocate(etcd, keys, pool, reservation, requested="10.0.0.1")  # the router

    # The caller's own comparison fails once (someone changed its record):
    # the allocation is retried from a fresh read, and nothing leaks.
    record = etcd_prefix + "record"
    await etcd.put(record, "v1")
    calls = []

    async def build(candidate: str) -> tuple[list[Compare], list[Put]]:
        kv = await etcd.get(record)
        assert kv is not None
        calls.append(candidate)
        if len(calls) == 1:
            await etcd.put(record, "v2")  # a concurrent writer, after our read
        return [Compare.unchanged_since(record, kv.mod_revision)], [Put(record, candidate)]

    address, _ = await ipam.allocate(etcd, keys, pool, reservation, build=build)
    assert len(calls) == 2
    assert (await etcd.get(record)).value.decode() == address  # type: ignore[union-attr]
    assert await ipam.taken(etcd, keys, "net") == {"10.0.0.4", address}


async def test_mac_and_vxlan_claims_are_exclusive(etcd: Etcd, etcd_prefix: str) -> None:
    keys = Keys(etcd_prefix.rstrip("/"))
    mac = ipam.random_mac()
    outcomes = await asyncio.gather(*(
        etcd.txn([c], [p]) for c, p in (ipam.claim_mac(keys, mac, f"if{i}") for i in range(5))
    ))
    assert sum(result.succeeded for result in outcomes) == 1
    compare, put = ipam.claim_vxid(keys, 42, "net-a")
    assert (await etcd.txn([compare], [put])).succeeded
    compare, put = ipam.claim_vxid(keys, 42, "net-b")
    assert not (await etcd.txn([compare], [put])).succeeded
