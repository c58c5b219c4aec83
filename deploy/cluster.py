"""What the deploy asks of the running cloud, from the deploy machine: etcd's
membership (a learner added, caught up and promoted; a member removed), its
health, and the cloud's own records (which nodes are alive, what runs where).

It connects over TLS with the portal's certificate from the deploy
directory's PKI, to the client URLs of the members cloud.yml names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cloudstate import tls
from cloudstate.etcd import Etcd, EtcdUnavailable, Member
from cloudstate.keys import Keys
from cloudstate.model import InstanceObserved, InstanceSpec, NodeInfo

CLIENT_PORT = 2379
PEER_PORT = 2380
PREFIX = "/sfcloud"
T = TypeVar("T")


class ClusterError(Exception):
    """etcd or the cloud is not in the state a step needs; the message says how."""


def client_url(address: str) -> str:
    return f"https://{address}:{CLIENT_PORT}"


def peer_url(address: str) -> str:
    return f"https://{address}:{PEER_PORT}"


@dataclass(frozen=True)
class MemberHealth:
    name: str
    address: str
    answered: bool
    leader: bool = False
    learner: bool = False
    error: str = ""


class Cluster:
    """The cloud's etcd as the deploy sees it. ``addresses`` are the client
    addresses to try (the etcd nodes of cloud.yml)."""

    def __init__(self, pki_dir: Path, addresses: Sequence[str], *, timeout: float = 5.0):
        self.credentials = tls.portal(pki_dir)
        self.addresses = list(addresses)
        self.timeout = timeout
        self.keys = Keys(PREFIX)

    def run(self, work: Callable[[Etcd], Awaitable[T]]) -> T:
        """``work`` with a client of the cloud's etcd (the deploy's own reads
        and writes of the cloud's records, such as joins)."""
        return self._run(work)

    def _run(self, work: Callable[[Etcd], Awaitable[T]],
             addresses: Sequence[str] | None = None, timeout: float | None = None) -> T:
        async def go() -> T:
            etcd = Etcd([(a, CLIENT_PORT) for a in (addresses or self.addresses)],
                        tls=self.credentials, timeout=timeout or self.timeout)
            try:
                return await work(etcd)
            finally:
                await etcd.close()

        return asyncio.run(go())

    # --- membership -------------------------------------------------------------

    def members(self) -> list[Member] | None:
        """The members, or None when no listed address answers (no cluster yet)."""
        try:
            return self._run(lambda etcd: etcd.members())
        except EtcdUnavailable:
            return None

    def voting(self) -> list[Member]:
        return [m for m in self.members() or [] if not m.learner]

    def add_learner(self, address: str, *, timeout: float = 60.0) -> Member:
        """Announce ``address`` as a learner, unless it is a member already.

        Asked of the voting members only (the newcomer's own address answers
        nothing yet), and again for a while: etcd refuses a change of
        membership while it judges itself unhealthy (a member restarted a
        moment ago, say), with the same "unavailable" as a member that is down.
        """
        url = peer_url(address)
        deadline = time.monotonic() + timeout
        while True:
            members = self.members() or []
            for member in members:
                if url in member.peer_urls:
                    return member
            voters = [a for a in self.addresses if a != address
                      and any(client_url(a) in m.client_urls for m in members if not m.learner)]
            try:
                return self._run(lambda etcd: etcd.add_member([url], learner=True),
                                 addresses=voters or None)
            except EtcdUnavailable:
                if time.monotonic() > deadline:
                    raise
            time.sleep(2.0)

    def promote(self, address: str, *, timeout: float = 120.0) -> None:
        """Make the learner at ``address`` a voting member, once it has caught
        up (etcd refuses before)."""
        url = peer_url(address)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            member = next((m for m in self.members() or [] if url in m.peer_urls), None)
            if member is None:
                raise ClusterError(f"{address} is not an etcd member to promote")
            if not member.learner:
                return
            try:
                self._run(lambda etcd, member_id=member.member_id: etcd.promote_member(
                    member_id))
                return
            except Exception as exc:  # noqa: BLE001 - "not in sync yet": retried below
                last = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            time.sleep(1.0)
        raise ClusterError(f"the etcd learner at {address} did not catch up within "
                           f"{timeout:.0f} s ({last})")

    def remove(self, address: str) -> bool:
        """Remove the member at ``address`` (asking a survivor); False if it
        was no member."""
        url = peer_url(address)
        member = next((m for m in self.members() or [] if url in m.peer_urls), None)
        if member is None:
            return False
        survivors = [a for a in self.addresses if a != address]
        self._run(lambda etcd: etcd.remove_member(member.member_id), addresses=survivors)
        return True

    def health(self) -> list[MemberHealth]:
        """Each member's own answer (each asked alone)."""
        members = self.members()
        if members is None:
            raise ClusterError("no etcd member answers at "
                               + ", ".join(client_url(a) for a in self.addresses))
        found = []
        for member in members:
            address = member.peer_urls[0].split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
            if member.learner:
                found.append(MemberHealth(member.name, address, answered=True, learner=True))
                continue
            try:
                status = self._run(lambda etcd: etcd.member_status(), addresses=[address],
                                   timeout=3.0)
            except EtcdUnavailable as exc:
                found.append(MemberHealth(member.name, address, answered=False,
                                          error=str(exc).splitlines()[0] if str(exc) else ""))
                continue
            found.append(MemberHealth(member.name, address, answered=True,
                                      leader=status.leader))
        return found

    def check_removal_keeps_quorum(self, address: str) -> None:
        """Refuse to remove a member if the cluster lacks quorum now or would
        after: etcd must agree to the change, and then carry on without it."""
        health = [h for h in self.health() if not h.learner]
        if not any(h.address == address for h in health):
            return
        voting = len(health)
        answering = [h for h in health if h.answered]
        if len(answering) < voting // 2 + 1:
            raise ClusterError(
                f"etcd has lost its quorum ({len(answering)} of {voting} members answer): "
                "bring members back before removing one")
        left = voting - 1
        still = [h for h in answering if h.address != address]
        if left == 0:
            raise ClusterError("it is the last etcd member: a cloud needs one")
        if len(still) < left // 2 + 1:
            raise ClusterError(
                f"removing it would leave {len(still)} of {left} etcd members answering, "
                "fewer than a quorum: bring the others back first")

    # --- the cloud's records --------------------------------------------------------

    def alive_nodes(self) -> set[str]:
        async def work(etcd: Etcd) -> set[str]:
            kvs, _ = await etcd.get_prefix(self.keys.alive)
            return {kv.key.rsplit("/", 1)[-1] for kv in kvs}

        return self._run(work)

    def node_info(self, name: str) -> NodeInfo | None:
        async def work(etcd: Etcd) -> NodeInfo | None:
            kv = await etcd.get(self.keys.node(name))
            return NodeInfo.from_json(kv.value) if kv else None

        return self._run(work)

    def instances_on(self, node: str) -> list[str]:
        """The names of the instances that still hold resources on ``node``."""
        async def work(etcd: Etcd) -> list[str]:
            specs, _ = await etcd.get_prefix(self.keys.instances)
            observed, _ = await etcd.get_prefix(self.keys.observed_instances)
            seen = {kv.key.rsplit("/", 1)[-1]: InstanceObserved.from_json(kv.value)
                    for kv in observed}
            names = []
            for kv in specs:
                spec = InstanceSpec.from_json(kv.value)
                gone = spec.desired == "deleted" and (
                    seen.get(spec.uuid) is None or seen[spec.uuid].state == "deleted")
                if spec.node == node and not gone:
                    names.append(f"{spec.namespace}/{spec.name}")
            return sorted(names)

        return self._run(work)

    def wait_alive(self, nodes: Sequence[str], *, since: float = 0.0,
                   release: str | None = None, timeout: float = 120.0) -> None:
        """Wait until each node's agent holds its lease, registered after
        ``since`` (a restart) and, if given, running ``release``."""
        deadline = time.monotonic() + timeout
        waiting = set(nodes)
        while waiting:
            try:
                alive = self.alive_nodes()
                for name in sorted(waiting):
                    info = self.node_info(name)
                    if (name in alive and info is not None and info.started_at >= since
                            and (release is None or info.release.endswith(release))):
                        waiting.discard(name)
            except EtcdUnavailable:
                pass
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"the agent of {', '.join(sorted(waiting))} did not come "
                                   f"up within {timeout:.0f} s (its log: "
                                   "/var/log/sfcloud/sfcloud-nodeagent.log or journalctl "
                                   "-u sfcloud-nodeagent)")
            time.sleep(1.0)
