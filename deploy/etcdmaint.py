"""Look after the cloud's etcd: its size, and what to do when it is full.

    python -m deploy.etcdmaint status    each member's size, and any alarm
    python -m deploy.etcdmaint repair    compact, defragment, disarm

etcd keeps every revision until it is compacted; sfcloud's etcd compacts by
itself (``--auto-compaction-retention``, see ``deploy.localetcd`` and the
systemd unit), but the file it writes to only shrinks when a member is
defragmented. A member whose file reaches its quota (``--quota-backend-bytes``)
raises the NOSPACE alarm, and from then on the whole cluster refuses every
write, even once space is free again, until the alarm is disarmed. The
portal then answers 503 and agents can't report what they do.

``repair`` does the three steps in the order that works: compact everything
before the current revision (watches that were behind re-list, which
sfcloud's do), defragment each member in turn (it blocks the member while it
runs), then disarm the alarms. It is safe to run at any time, and is what to
run when the logs say "etcdserver: mvcc: database space exceeded".

It connects with the portal's certificate from ``SFCLOUD_PKI_DIR`` (so run it
as the user who may read it, root on ``make run``), to every endpoint of
``SFCLOUD_ETCD_ENDPOINTS``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudstate import tls
from cloudstate.etcd import Etcd, EtcdUnavailable, MemberStatus
from cloudstate.settings import check_at_start, read

# Defragmenting a large file takes a while; the usual 5 s would give up on it.
MAINTENANCE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Member:
    endpoint: tuple[str, int]
    status: MemberStatus | None  # None: it did not answer
    error: str = ""

    @property
    def where(self) -> str:
        host, port = self.endpoint
        return f"{host}:{port}"


def _client(endpoint: tuple[str, int], credentials: tls.Credentials) -> Etcd:
    return Etcd([endpoint], tls=credentials, timeout=MAINTENANCE_TIMEOUT)


async def members(endpoints: Sequence[tuple[str, int]],
                  credentials: tls.Credentials) -> list[Member]:
    found = []
    for endpoint in endpoints:
        etcd = _client(endpoint, credentials)
        try:
            found.append(Member(endpoint, await etcd.member_status()))
        except EtcdUnavailable as exc:
            found.append(Member(endpoint, None, str(exc).splitlines()[0]))
        finally:
            await etcd.close()
    return found


async def status(endpoints: Sequence[tuple[str, int]], credentials: tls.Credentials) -> list[str]:
    lines = []
    for member in await members(endpoints, credentials):
        if member.status is None:
            lines.append(f"{member.where}: does not answer ({member.error})")
            continue
        st = member.status
        lines.append(f"{member.where}: member {st.member_id:x}{' (leader)' if st.leader else ''}, "
                     f"revision {st.revision}, {st.db_size / 2**20:.1f} MiB on disk, "
                     f"{st.db_size_in_use / 2**20:.1f} MiB in use")
    etcd = Etcd(list(endpoints), tls=credentials)
    try:
        alarms = await etcd.alarms()
    finally:
        await etcd.close()
    lines += [f"alarm {alarm.kind} on member {alarm.member_id:x}: writes are refused; run "
              "`python -m deploy.etcdmaint repair`" for alarm in alarms]
    if not alarms:
        lines.append("no alarms")
    return lines


async def repair(endpoints: Sequence[tuple[str, int]], credentials: tls.Credentials,
                 say: Callable[[str], object] = print) -> None:
    """Compact, defragment every member one at a time, disarm every alarm."""
    etcd = Etcd(list(endpoints), tls=credentials, timeout=MAINTENANCE_TIMEOUT)
    try:
        revision = await etcd.revision()
        try:
            await etcd.compact(revision)
            say(f"compacted history before revision {revision}")
        except EtcdUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - "already compacted" is fine; say so
            say(f"compaction: {exc} (carrying on)")
        for member in await members(endpoints, credentials):
            if member.status is None:
                say(f"{member.where}: does not answer, not defragmented ({member.error})")
                continue
            client = _client(member.endpoint, credentials)
            try:
                await client.defragment()
                after = await client.member_status()
            finally:
                await client.close()
            say(f"{member.where}: defragmented, {member.status.db_size / 2**20:.1f} MiB -> "
                f"{after.db_size / 2**20:.1f} MiB")
        for alarm in await etcd.alarms():
            await etcd.disarm(alarm)
            say(f"disarmed {alarm.kind} on member {alarm.member_id:x}")
    finally:
        await etcd.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.etcdmaint",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("status", "repair"))
    parser.add_argument("--pki-dir", type=Path, help="default: SFCLOUD_PKI_DIR")
    args = parser.parse_args(argv)
    check_at_start("deploy.etcdmaint")
    credentials = tls.portal((args.pki_dir or read("SFCLOUD_PKI_DIR")).resolve())
    endpoints = read("SFCLOUD_ETCD_ENDPOINTS")
    try:
        credentials.check()
        if args.command == "status":
            print("\n".join(asyncio.run(status(endpoints, credentials))))
        else:
            asyncio.run(repair(endpoints, credentials))
    except (tls.TlsError, EtcdUnavailable) as exc:
        print(f"deploy.etcdmaint: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
