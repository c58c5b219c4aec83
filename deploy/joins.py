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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cloudstate import jointokens
from cloudstate.etcd import Compare, Etcd, Put
from cloudstate.jointokens import JoinToken
from deploy import cloudconfig
from deploy.cloudconfig import NodeConfig
from deploy.cluster import Cluster, ClusterError
from deploy.operations import Context, DeployError, add_node

POLL = 2.0


def publish_key(cluster: Cluster, public_key_file: Path) -> None:
    try:
        key = public_key_file.read_text().strip()
    except OSError as exc:
        raise DeployError(f"the deploy's SSH public key {public_key_file}: {exc}") from None
    keys = cluster.keys

    async def work(etcd: Etcd) -> None:
        await etcd.put(keys.deploy_ssh_key, key.encode())

    cluster.run(work)


def pending(cluster: Cluster) -> list[tuple[JoinToken, int]]:
    """Used tokens whose join nobody took yet, oldest first, with their revisions."""
    keys = cluster.keys

    async def work(etcd: Etcd) -> list[tuple[JoinToken, int]]:
        kvs, _ = await etcd.get_prefix(keys.join_tokens)
        found = [(JoinToken.from_json(kv.value), kv.mod_revision) for kv in kvs]
        return [(record, revision) for record, revision in found
                if record.state == jointokens.USED and record.join_state == jointokens.PENDING]

    return sorted(cluster.run(work), key=lambda pair: pair[0].ended_at)


def _write(cluster: Cluster, record: JoinToken, revision: int) -> int | None:
    """Put ``record`` if its key is still at ``revision``; its new revision, or
    None when someone else changed it first."""
    key = cluster.keys.join_token(record.id)

    async def work(etcd: Etcd) -> int | None:
        result = await etcd.txn([Compare.unchanged_since(key, revision)],
                                [Put(key, record.to_json())])
        return result.revision if result.succeeded else None

    return cluster.run(work)


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


def take(ctx: Context, cluster: Cluster, record: JoinToken, revision: int,
         adding: Callable[[Context, NodeConfig], object] = add_node) -> JoinToken | None:
    """Add the machine of one used token; its record as the join ended
    (None: another acceptor took it)."""
    claimed = record.replace(join_state=jointokens.JOINING, message="")
    revision_now = _write(cluster, claimed, revision)
    if revision_now is None:
        return None
    ctx.say(f"{record.node} ({record.address}) joins with token {record.id}"
            f"{', as an etcd member' if record.etcd else ''}")
    try:
        # Checked again here: the record came from etcd, not from this machine.
        joiner = jointokens.joiner({"name": record.node, "address": record.address,
                                    "host_key": record.host_key})
        config = ctx.config()
        if joiner.node in config.names:
            raise DeployError(f"a node named {joiner.node} is in cloud.yml already")
        trust_host_key(Path(config.ssh.known_hosts), joiner.address, joiner.host_key)
        adding(ctx, NodeConfig(name=joiner.node, address=joiner.address, etcd=record.etcd))
    except (DeployError, cloudconfig.ConfigError, ClusterError, ValueError) as exc:
        ended = claimed.replace(join_state=jointokens.FAILED, message=str(exc)[:2000])
        ctx.say(f"{record.node} did not join: {exc}")
    else:
        ended = claimed.replace(join_state=jointokens.JOINED)
        ctx.say(f"{record.node} joined")
    _write(cluster, ended, revision_now)
    return ended


def accept(ctx: Context, *, once: bool = False, timeout: float | None = None,
           poll: float = POLL) -> int:
    """Take joins until stopped (``once``: after the first; ``timeout``:
    after that many seconds without one). Answers how many joined."""
    config = ctx.config()
    cluster = ctx.cluster(config)
    publish_key(cluster, Path(f"{config.ssh.key}.pub"))
    ctx.say("taking joins (the Nodes page makes the tokens)")
    joined = 0
    idle_since = time.monotonic()
    while True:
        for record, revision in pending(cluster):
            ended = take(ctx, cluster, record, revision)
            if ended is None:
                continue
            joined += ended.join_state == jointokens.JOINED
            idle_since = time.monotonic()
            if once:
                return joined
        if timeout is not None and time.monotonic() - idle_since > timeout:
            return joined
        time.sleep(poll)
