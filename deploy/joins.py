"""``sfcloud-deploy accept-joins``: the deploy machine's half of a join with a
token (the new machine's half is deploy.joinclient; the token is
cloudstate.jointokens).

It publishes the deploy's SSH public key in etcd (the portal hands it to
each machine that redeems a token), then takes each used token whose join
is pending, one at a time: claims it (an etcd transaction, so two
acceptors never add one machine twice), writes the machine's SSH host key
into the deploy's known_hosts under its address, and runs ``add-node``
itself (the same play, with ``--etcd`` when the token said so). How it went
(joined, or failed and why) goes into the token's record, where the new
machine reads it. The CA key and every other secret stay here: the machine
only ever gets the certificates add-node gives a node.

A claim is held on the acceptor's etcd lease (``<prefix>/deploy/joining/<id>``):
an acceptor that dies half-way (killed, its machine rebooted) lets its lease
expire, and the next acceptor running takes that join over (add-node is
idempotent: a second run finishes what the first began). Between joins it
sleeps on a watch of the tokens, not a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from cloudstate import jointokens
from cloudstate.etcd import Compacted, Compare, Delete, Etcd, Put
from cloudstate.jointokens import JoinToken
from cloudstate.keys import Keys
from deploy import cloudconfig
from deploy.cloudconfig import NodeConfig
from deploy.cluster import Cluster, ClusterError
from deploy.operations import Context, DeployError, add_node

# An acceptor that has not renewed its lease for this long has died: its
# joins in progress are taken over by another.
LEASE_TTL = 15
# Between joins, wake at least this often (a --timeout to keep, a join whose
# acceptor died: its claim's deletion is not under the watched prefix).
WAKE = 30.0

Adding = Callable[[Context, NodeConfig], object]


def publish_key(cluster: Cluster, public_key_file: Path) -> None:
    try:
        key = public_key_file.read_text().strip()
    except OSError as exc:
        raise DeployError(f"the deploy's SSH public key {public_key_file}: {exc}") from None
    keys = cluster.keys

    async def work(etcd: Etcd) -> None:
        await etcd.put(keys.deploy_ssh_key, key.encode())

    cluster.run(work)


async def _pending(etcd: Etcd, keys: Keys) -> tuple[list[tuple[JoinToken, int]], int]:
    """Used tokens whose join nobody is taking (pending, or joining by an
    acceptor that is gone), oldest first, with their revisions; and the
    revision they were read at."""
    kvs, revision = await etcd.get_prefix(keys.join_tokens)
    claims, _ = await etcd.get_prefix(keys.joins_taken)
    claimed = {kv.key.rsplit("/", 1)[-1] for kv in claims}
    found = []
    for kv in kvs:
        record = JoinToken.from_json(kv.value)
        if record.state != jointokens.USED or record.id in claimed:
            continue
        if record.join_state in (jointokens.PENDING, jointokens.JOINING):
            found.append((record, kv.mod_revision))
    return sorted(found, key=lambda pair: pair[0].ended_at), revision


def pending(cluster: Cluster) -> list[tuple[JoinToken, int]]:
    """Used tokens whose join nobody is taking, oldest first, with their revisions."""
    keys = cluster.keys

    async def work(etcd: Etcd) -> list[tuple[JoinToken, int]]:
        return (await _pending(etcd, keys))[0]

    return cluster.run(work)


class _Acceptor:
    """One acceptor's lease, and the claims it holds on it."""

    def __init__(self, etcd: Etcd, keys: Keys):
        self.etcd, self.keys = etcd, keys
        self.id = secrets.token_hex(4)
        self.lease = 0
        self.holding: set[str] = set()
        self._leased = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Acceptor:
        self._task = asyncio.create_task(self.etcd.hold_lease(LEASE_TTL, self._attach))
        waiting = asyncio.create_task(self._leased.wait())
        await asyncio.wait({waiting, self._task}, timeout=LEASE_TTL * 2,
                           return_when=asyncio.FIRST_COMPLETED)
        if not self._leased.is_set():
            waiting.cancel()
            await self.__aexit__()
            raise ClusterError("the cloud's etcd gave no lease to take joins on: is it up?")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _attach(self, lease: int) -> None:
        # Again after a lost lease: the claims in progress come back with it.
        for token_id in self.holding:
            await self.etcd.put(self.keys.join_taken(token_id), self.id.encode(), lease=lease)
        self.lease = lease
        self._leased.set()

    async def write(self, record: JoinToken, revision: int, *, claim: bool = False,
                    release: bool = False) -> int | None:
        """Put ``record`` if its key is still at ``revision`` (and, to
        ``claim`` it, nobody holds its join); its new revision, or None when
        someone else was first."""
        key = self.keys.join_token(record.id)
        taken = self.keys.join_taken(record.id)
        compares = [Compare.unchanged_since(key, revision)]
        ops: list[Put | Delete] = [Put(key, record.to_json())]
        if claim:
            compares.append(Compare.absent(taken))
            ops.append(Put(taken, self.id, lease=self.lease))
        if release:
            ops.append(Delete(taken))
        result = await self.etcd.txn(compares, ops)
        if not result.succeeded:
            return None
        if claim:
            self.holding.add(record.id)
        if release:
            self.holding.discard(record.id)
        return result.revision


async def _take(ctx: Context, acceptor: _Acceptor, record: JoinToken, revision: int,
                adding: Adding) -> JoinToken | None:
    claimed = record.replace(join_state=jointokens.JOINING, message="")
    revision_now = await acceptor.write(claimed, revision, claim=True)
    if revision_now is None:
        return None
    taken_over = record.join_state == jointokens.JOINING
    ctx.say(f"{record.node} ({record.address}) joins with token {record.id}"
            f"{', as an etcd member' if record.etcd else ''}"
            f"{' (again: the acceptor that began it is gone)' if taken_over else ''}")
    try:
        # Checked again here: the record came from etcd, not from this machine.
        joiner = jointokens.joiner({"name": record.node, "address": record.address,
                                    "host_key": record.host_key})
        config = ctx.config()
        if joiner.node in config.names and not taken_over:
            raise DeployError(f"a node named {joiner.node} is in cloud.yml already")
        trust_host_key(Path(config.ssh.known_hosts), joiner.address, joiner.host_key)
        node = NodeConfig(name=joiner.node, address=joiner.address, etcd=record.etcd)
        # add-node is synchronous (Ansible); the lease is kept alive meanwhile.
        await asyncio.to_thread(adding, ctx, node)
    except (DeployError, cloudconfig.ConfigError, ClusterError, ValueError) as exc:
        ended = claimed.replace(join_state=jointokens.FAILED, message=str(exc)[:2000])
        ctx.say(f"{record.node} did not join: {exc}")
    else:
        ended = claimed.replace(join_state=jointokens.JOINED)
        ctx.say(f"{record.node} joined")
    await acceptor.write(ended, revision_now, release=True)
    return ended


def take(ctx: Context, cluster: Cluster, record: JoinToken, revision: int,
         adding: Adding = add_node) -> JoinToken | None:
    """Add the machine of one used token; its record as the join ended
    (None: another acceptor took it)."""
    keys = cluster.keys

    async def work(etcd: Etcd) -> JoinToken | None:
        async with _Acceptor(etcd, keys) as acceptor:
            return await _take(ctx, acceptor, record, revision, adding)

    return cluster.run(work)


async def _changed(etcd: Etcd, prefix: str, after: int, timeout: float) -> None:
    """Back when something under ``prefix`` changed after revision ``after``,
    or ``timeout`` seconds passed."""
    async def first() -> None:
        async for _ in etcd.watch_prefix(prefix, after + 1):
            return

    # Compacted: that history is gone, so read everything again now.
    with contextlib.suppress(TimeoutError, Compacted):
        await asyncio.wait_for(first(), timeout)


def trust_host_key(known_hosts: Path, address: str, host_key: str) -> None:
    """``address``'s host key, in place of any other for that address."""
    kept = []
    if known_hosts.exists():
        kept = [line for line in known_hosts.read_text().splitlines()
                if line.split(" ", 1)[0] not in (address, f"[{address}]:22")]
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = known_hosts.with_name(known_hosts.name + ".partial")
    partial.write_text("\n".join([*kept, f"{address} {host_key}"]) + "\n")
    partial.chmod(0o600)
    partial.replace(known_hosts)


def accept(ctx: Context, *, once: bool = False, timeout: float | None = None,
           adding: Adding = add_node) -> int:
    """Take joins until stopped (``once``: after the first; ``timeout``:
    after that many seconds without one). Answers how many joined."""
    config = ctx.config()
    cluster = ctx.cluster(config)
    publish_key(cluster, Path(f"{config.ssh.key}.pub"))
    keys = cluster.keys

    async def work(etcd: Etcd) -> int:
        joined = 0
        idle_since = time.monotonic()
        async with _Acceptor(etcd, keys) as acceptor:
            ctx.say("taking joins (the Nodes page makes the tokens)")
            while True:
                found, revision = await _pending(etcd, keys)
                for record, record_revision in found:
                    ended = await _take(ctx, acceptor, record, record_revision, adding)
                    if ended is None:
                        continue
                    joined += ended.join_state == jointokens.JOINED
                    idle_since = time.monotonic()
                    if once:
                        return joined
                wait = WAKE
                if timeout is not None:
                    left = timeout - (time.monotonic() - idle_since)
                    if left <= 0:
                        return joined
                    wait = min(wait, left)
                await _changed(etcd, keys.join_tokens, revision, wait)

    return cluster.run(work)
