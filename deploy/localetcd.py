"""Run a single-member etcd as a child process.

Used by the all-in-one runner (``make run``) and by the tests. The member
listens on 127.0.0.1 only, and only over TLS: it serves with its own
certificate from the cloud's CA (``etcd-<name>.crt`` in the PKI directory,
for clients and for its peer port alike) and refuses any client that does
not present a certificate the same CA signed for one of the cloud's parts
(naming ``tls.ETCD_CLIENT_NAME``, which a monitor's never does), so on a
shared machine no local user without the cloud's keys reaches it. Its data directory may be
fresh or left over from an earlier run: etcd ignores the ``--initial-*``
flags once a data directory exists, so starting again simply carries on
with the stored state.

etcd writes its log to ``<data dir's parent>/<name>.etcd.log`` (appended to
across restarts), so the log survives wiping the data directory and a failed
start can report why it failed.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from cloudstate import tls

if TYPE_CHECKING:
    from cloudstate.etcd import Etcd

ETCD_BINARY = "/usr/bin/etcd"
LOOPBACK = "127.0.0.1"
# SFCLOUD_ETCD_ENDPOINTS defaults to here (cloudstate/settings.py); not etcd's 2379, which a
# distribution's own etcd service may hold.
DEFAULT_CLIENT_PORT = 23790
DEFAULT_PEER_PORT = 23800

# Without compaction etcd keeps every revision forever and eventually hits its
# quota, after which it refuses all writes (Shaken Fist's issue #127).
DEFAULT_COMPACTION_RETENTION = "1h"
# etcd 3.4 defaults to 2 GiB and suggests at most 8 GiB.
DEFAULT_QUOTA_BYTES = 4 * 1024**3
# 3.4 keeps this many raft entries in memory before snapshotting; its default
# of 100000 is sized for busy clusters, not a small cloud's single member.
DEFAULT_SNAPSHOT_COUNT = 10_000


# Members this process started and has not stopped yet. If the interpreter
# exits without stopping one (an unhandled error in `make run`, a test run
# that crashed), it must not outlive us holding its ports and data dir.
_LIVE: set[LocalEtcd] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.kill()


class EtcdStartError(RuntimeError):
    """etcd exited or did not answer in time; the message ends with its log."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now.

    Another process can take it before etcd binds it; ``LocalEtcd.start``
    then fails with etcd's "address already in use" in the log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct free ports (all held open while choosing, so no repeats)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class LocalEtcd:
    """One etcd member on loopback, owned by this process.

    Ports are fixed when the object is made (picked free ones by default) and
    kept across ``restart()``, so clients keep the same endpoint.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        pki_dir: str | os.PathLike[str],
        name: str = "sfcloud",
        client_port: int | None = None,
        peer_port: int | None = None,
        binary: str = ETCD_BINARY,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        compaction_retention: str = DEFAULT_COMPACTION_RETENTION,
        snapshot_count: int = DEFAULT_SNAPSHOT_COUNT,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        client_tls: tls.Credentials | None = None,
    ):
        """The member's certificate must be in ``pki_dir`` already
        (``deploy.pki.ensure_local_etcd`` makes one); ``client_tls`` is what
        this object's own probes and ``client()`` present (the portal's by
        default)."""
        self.data_dir = Path(data_dir).absolute()
        self.name = name
        self.pki_dir = Path(pki_dir).absolute()
        self.tls = tls.etcd_member(self.pki_dir, name)
        self.client_tls = client_tls or tls.portal(self.pki_dir)
        if not client_port or not peer_port:  # None or 0: any free port
            free = free_ports(2)
            client_port = client_port or free[0]
            peer_port = peer_port or next(port for port in free if port != client_port)
        self.client_port = client_port
        self.peer_port = peer_port
        self.binary = binary
        self.quota_bytes = quota_bytes
        self.compaction_retention = compaction_retention
        self.snapshot_count = snapshot_count
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{name}.etcd.log"
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @classmethod
    def standalone(cls, data_dir: str | os.PathLike[str], *, name: str = "sfcloud",
                   **options: object) -> LocalEtcd:
        """A member with a CA of its own in ``pki/`` beside its data directory
        (made if missing, kept if there): for benchmarks and tools that run
        an etcd by itself."""
        from deploy.pki import ensure_local_etcd  # noqa: PLC0415 - cryptography only here

        pki_dir = Path(data_dir).absolute().parent / "pki"
        ensure_local_etcd(pki_dir, name)
        return cls(data_dir, pki_dir=pki_dir, name=name, **options)  # type: ignore[arg-type]

    # --- addresses ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"https://{LOOPBACK}:{self.client_port}"

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """The form ``cloudstate.etcd.Etcd`` takes."""
        return [(LOOPBACK, self.client_port)]

    @property
    def peer_url(self) -> str:
        return f"https://{LOOPBACK}:{self.peer_port}"

    def client(self, *, timeout: float = 5.0) -> Etcd:
        """A client of this member with ``client_tls``."""
        from cloudstate.etcd import Etcd  # noqa: PLC0415 - gRPC only for those who need it

        return Etcd(self.endpoints, tls=self.client_tls, timeout=timeout)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        return [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={self.name}={self.peer_url}",
            # Ignored by etcd when the data directory already holds a member.
            "--initial-cluster-state=new",
            f"--initial-cluster-token=sfcloud-{self.name}",
            "--auto-compaction-mode=periodic",
            f"--auto-compaction-retention={self.compaction_retention}",
            f"--quota-backend-bytes={self.quota_bytes}",
            # TLS on both ports, with a client certificate from the cloud's CA
            # required on both. etcd reads these files at every new
            # connection, so a renewed certificate needs no restart.
            f"--cert-file={self.tls.cert}",
            f"--key-file={self.tls.key}",
            f"--trusted-ca-file={self.tls.ca}",
            "--client-cert-auth",
            # ...and, of those, only the parts' (not a monitor's: Prometheus').
            f"--client-cert-allowed-hostname={tls.ETCD_CLIENT_NAME}",
            f"--peer-cert-file={self.tls.cert}",
            f"--peer-key-file={self.tls.key}",
            f"--peer-trusted-ca-file={self.tls.ca}",
            "--peer-client-cert-auth",
            *self._crl_args(),
            f"--snapshot-count={self.snapshot_count}",
            # Metrics stay on the client URL, which is loopback.
            "--metrics=basic",
            "--enable-pprof=false",
            "--logger=zap",
            # stderr goes to our log file, so Go panics and flag errors (which
            # bypass zap) land next to the structured log.
            "--log-outputs=stderr",
            *self.extra_args,
        ]

    def _crl_args(self) -> list[str]:
        """The CA's revocation list, when the PKI directory has one: etcd
        reads it at every new connection and refuses a revoked certificate
        (a removed node's). A list named but missing would refuse everyone."""
        crl = self.tls.crl
        if not crl.exists():
            return []
        return [f"--client-crl-file={crl}", f"--peer-crl-file={crl}"]

    # --- lifecycle ------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Start etcd and return once it serves linearizable reads."""
        if self.running:
            raise RuntimeError(f"etcd {self.name} is already running (pid {self.pid})")
        try:
            self.tls.check()
            self.client_tls.check()
        except tls.TlsError as exc:
            raise EtcdStartError(f"etcd {self.name} can't start: {exc}") from None
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=True,
            )
        _LIVE.add(self)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise EtcdStartError(
                    f"etcd {self.name} exited with status {self._proc.returncode}"
                    f"\n{self.log_tail()}"
                )
            if self._serves_as_ours():
                return
            if time.monotonic() > deadline:
                raise EtcdStartError(
                    f"etcd {self.name} did not answer on {self.endpoint} within "
                    f"{timeout:.0f} s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _serves_as_ours(self) -> bool:
        """Whether the member on our port serves a linearizable read, and is ours.

        A read needs an elected leader, so it is a better signal than an open
        port; unlike /health it still works under a NOSPACE alarm, which an
        operator must be able to start etcd to disarm. Another etcd could
        already hold the port we were given (ours then dies on bind, but the
        other would answer): the member list names ours. Over gRPC, as
        sfcloud's clients talk: etcd's HTTP gateway can't reach its own gRPC
        side once clients must name ``tls.ETCD_CLIENT_NAME``.
        """
        import grpc  # noqa: PLC0415 - gRPC only for those who need it
        from aetcd import rpc  # noqa: PLC0415

        try:
            ca, cert, key = self.client_tls.read()
        except tls.TlsError:
            return False
        credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                   certificate_chain=cert)
        try:
            with grpc.secure_channel(f"{LOOPBACK}:{self.client_port}", credentials) as channel:
                rpc.KVStub(channel).Range(rpc.RangeRequest(key=b"\0"), timeout=1.0)
                members = rpc.ClusterStub(channel).MemberList(rpc.MemberListRequest(),
                                                               timeout=1.0)
        except grpc.RpcError:
            return False
        return self.running and any(m.name == self.name for m in members.members)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (etcd flushes and exits), then SIGKILL if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None
        _LIVE.discard(self)

    def kill(self) -> None:
        """SIGKILL: what a power cut or the OOM killer looks like to etcd."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None
        _LIVE.discard(self)

    def restart(self, *, kill: bool = False, timeout: float = 20.0) -> None:
        """Stop (or kill) and start again on the same data directory and ports."""
        if kill:
            self.kill()
        else:
            self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines etcd logged since the latest ``start()``."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_start)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalEtcd:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"LocalEtcd({self.name!r}, {self.endpoint}, {self.data_dir}, {state})"


def main(argv: Sequence[str] | None = None) -> int:
    """Run etcd in the foreground until SIGINT or SIGTERM (for ``make run``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="kept across runs")
    parser.add_argument("--name", default="sfcloud")
    parser.add_argument("--client-port", type=int, default=DEFAULT_CLIENT_PORT, help="0: any")
    parser.add_argument("--peer-port", type=int, default=DEFAULT_PEER_PORT, help="0: any")
    args = parser.parse_args(argv)
    # Its certificates (and a CA) in pki/ beside the data directory.
    server = LocalEtcd.standalone(
        args.data_dir, name=args.name, client_port=args.client_port, peer_port=args.peer_port
    )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM becomes KeyboardInterrupt too, so it also lands in start()'s
    # cleanup when it arrives before etcd is ready.
    signal.signal(signal.SIGTERM, interrupt)
    try:
        server.start()
        print(f"etcd {server.name} serving {server.endpoint}; log: {server.log_path}", flush=True)
        while server.running:
            time.sleep(0.5)
        print(f"etcd exited by itself\n{server.log_tail()}", file=sys.stderr)
        return 1
    except EtcdStartError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
