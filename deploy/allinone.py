"""``make run``: the whole cloud on this machine, in the foreground.

Makes the cloud's CA and certificates the first time (and renews those about
to expire at every start), starts what is not already running (etcd,
libvirtd, virtlogd), prepares the portal's database and the ``demo`` image,
then runs the node agent and the portal, and prints where to go and how to
log in. Ctrl-C or SIGTERM stops
everything it started, in reverse order. Guests keep running: they are the
users' workloads, and the next ``make run`` picks them up again.

Real deployments use the systemd units in deploy/systemd/ instead.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cloudstate import privacy
from cloudstate.settings import REPO_ROOT, check_at_start, is_set, read
from cloudstate.signing import load_secret
from deploy import pki, portaluser
from deploy.guestimage import ensure_guest_image
from deploy.localetcd import LocalEtcd
from deploy.localvirt import LocalLibvirt, stop_process

ETCD_CLIENT_PORT = 23790
ETCD_PEER_PORT = 23800
ETCD_MEMBER = "sfcloud"


class Runner:
    def __init__(self, state_dir: Path, address: str, pki_dir: Path):
        self.state_dir = state_dir
        self.address = address
        self.pki_dir = pki_dir
        self.log_dir = state_dir / "log"
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.etcd: LocalEtcd | None = None
        self.libvirt = LocalLibvirt(self.log_dir)
        self.env = dict(os.environ)
        self.portal_user: portaluser.PortalUser | None = None

    # --- output -------------------------------------------------------------------

    @staticmethod
    def say(message: str) -> None:
        print(f"sfcloud: {message}", flush=True)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- children -----------------------------------------------------------------

    # --- the portal's user ---------------------------------------------------------

    def prepare_portal_user(self) -> None:
        """Run the portal unprivileged, as its systemd unit does, when its
        user can reach the code; else say why it stays root."""
        prepared = portaluser.prepare(
            self.state_dir, sys.executable, env=self.env,
            secrets=portaluser.readable_secrets(self.state_dir, self.pki_dir))
        self.portal_user = prepared.user
        if prepared.user is None:
            self.say(f"warning: the portal runs as root: {prepared.why_not}. Put the "
                     "checkout and its Python where other users can read them (e.g. "
                     "/opt/sfcloud) to run it unprivileged")
        else:
            self.say(f"the portal runs as user {prepared.user.name}")

    def as_portal(self, argv: list[str]) -> list[str]:
        return argv if self.portal_user is None else self.portal_user.command(argv)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the child
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=self.env, cwd=REPO_ROOT,
            # Ctrl-C reaches only us; we stop the children in order.
            start_new_session=True,
        )
        self.children.append((name, process))
        return process

    def stop_all(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                self.say(f"stopping {name}")
                stop_process(process)
        self.children.clear()
        self.libvirt.stop()
        if self.etcd is not None:
            self.say("stopping etcd")
            self.etcd.stop()
            self.etcd = None

    # --- the parts ----------------------------------------------------------------

    def ensure_certificates(self) -> None:
        """The CA, and every certificate this machine's parts present: made
        the first time, issued again when one expires soon or no longer
        covers the address it serves on."""
        made_ca = not pki.CertificateAuthority(self.pki_dir).exists()
        issued = pki.ensure_all_in_one(
            self.pki_dir, node=read("SFCLOUD_NODE_NAME"), node_ip=read("SFCLOUD_NODE_IP"),
            etcd_member=ETCD_MEMBER, portal_ips=_serving_ips(read("SFCLOUD_PORTAL_AGENTS_ADDRESS")),
            renew_days=read("SFCLOUD_CERT_RENEW_DAYS"))
        if made_ca:
            self.say(f"made the cloud's CA and certificates in {self.pki_dir} "
                     "(keep this directory private, and in your backups)")
        elif issued:
            self.say("issued " + ", ".join(i.path.name for i in issued))

    def start_etcd(self) -> None:
        if is_set("SFCLOUD_ETCD_ENDPOINTS"):
            self.say(f"using etcd at {self.env['SFCLOUD_ETCD_ENDPOINTS']}")
            return
        self.etcd = LocalEtcd(
            data_dir=self.state_dir / "etcd",
            pki_dir=self.pki_dir,
            name=ETCD_MEMBER,
            client_port=ETCD_CLIENT_PORT,
            peer_port=ETCD_PEER_PORT,
        )
        self.etcd.start()
        self.env["SFCLOUD_ETCD_ENDPOINTS"] = self.etcd.endpoint
        self.say(f"etcd is running at {self.etcd.endpoint} (data in {self.state_dir / 'etcd'})")

    def start_libvirt(self) -> None:
        self.libvirt.ensure()
        if self.libvirt.started:
            self.say("started virtlogd and libvirtd (no init system runs them here)")

    def prepare_portal(self, demo_image: Path) -> dict[str, str]:
        python = sys.executable
        manage = str(REPO_ROOT / "manage.py")
        subprocess.run(self.as_portal([python, manage, "migrate", "--noinput", "-v", "0"]),
                       env=self.env, check=True, cwd=REPO_ROOT)
        result = subprocess.run(
            self.as_portal([python, manage, "bootstrap", "--demo-image", str(demo_image)]),
            env=self.env, check=True, capture_output=True, text=True, cwd=REPO_ROOT,
        )
        secrets = {}
        for line in result.stdout.splitlines():
            key, _, value = line.partition(": ")
            secrets[key] = value
        return secrets

    def start_services(self) -> None:
        host, _, port = self.address.rpartition(":")
        for address, setting in ((self.address, "SFCLOUD_PORTAL_ADDRESS"),
                                 (self.env["SFCLOUD_PORTAL_AGENTS_ADDRESS"],
                                  "SFCLOUD_PORTAL_AGENTS_ADDRESS")):
            taken_host, _, taken_port = address.rpartition(":")
            if _port_taken(taken_host.strip("[]"), int(taken_port)):
                raise RuntimeError(
                    f"{address} is already in use; set {setting} to another address")
        self.spawn("nodeagent", [sys.executable, "-m", "nodeagent"])
        self.spawn("portal", self.as_portal([
            sys.executable, "-m", "uvicorn", "portal.asgi:application",
            "--host", host, "--port", port, "--lifespan", "on",
            # permessage-deflate costs 35x on console (VNC) traffic.
            "--ws-per-message-deflate", "false", "--no-access-log",
        ]))
        deadline = time.monotonic() + 60
        while not _port_taken(host, int(port)):
            for name, process in self.children:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError("the portal did not start:\n" + self.log_tail("portal"))
            time.sleep(0.2)

    def banner(self, secrets: dict[str, str]) -> None:
        url = f"http://{self.address}"
        lines = [
            "",
            f"  sfcloud is running: open {url}",
            "",
            "  Log in as:  admin",
            f"  Password:   {secrets['admin-password']}   (shown only this once)"
            if "admin-password" in secrets else
            "  Password:   the one printed at the first start, or SFCLOUD_ADMIN_PASSWORD",
            "",
            "  Shaken Fist's client (pip install shakenfist-client) works against it:",
            f"    export SHAKENFIST_API_URL={url}/api",
            "    export SHAKENFIST_NAMESPACE=system",
            f"    export SHAKENFIST_KEY={secrets['system-key']}   (shown only this once)"
            if "system-key" in secrets else
            "    export SHAKENFIST_KEY=<the system key printed at the first start>",
            "    sf-client instance create hello 1 256 -d 1@demo",
            "",
            f"  Logs are in {self.log_dir}/. Press Ctrl-C to stop.",
            "",
        ]
        print("\n".join(lines), flush=True)

    def wait(self) -> int:
        while True:
            for name, process in self.children:
                if process.poll() is not None:
                    self.say(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
                    return 1
            time.sleep(0.5)


def _serving_ips(address: str) -> list[str]:
    """The address a listener serves on, for its certificate (none for a
    wildcard: then name the machine's addresses with `python -m deploy.pki`)."""
    host = address.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return []
    return [] if ip.is_unspecified else [str(ip)]


def _port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def main() -> int:
    parser = argparse.ArgumentParser(description="run the whole sfcloud on this machine")
    parser.add_argument("--address", help="where the portal listens (default: "
                        "SFCLOUD_PORTAL_ADDRESS)")
    args = parser.parse_args()
    # Before anything is started or made: a bad setting stops us here, named.
    check_at_start("make run")
    privacy.private_umask()  # and every child's: the state is no local user's business
    address = args.address or read("SFCLOUD_PORTAL_ADDRESS")
    state_dir = read("SFCLOUD_STATE_DIR").resolve()
    privacy.passage_dir(state_dir)  # qemu must reach disk images below it
    privacy.tighten(state_dir)  # what an older version left readable
    pki_dir = read("SFCLOUD_PKI_DIR").resolve()
    runner = Runner(state_dir, address, pki_dir)
    privacy.private_dir(runner.log_dir)
    runner.env["SFCLOUD_STATE_DIR"] = str(state_dir)
    runner.env["SFCLOUD_PKI_DIR"] = str(pki_dir)
    runner.env["SFCLOUD_PORTAL_ADDRESS"] = address
    # The portal takes its agent's events there, over TLS (read after
    # SFCLOUD_PORTAL_ADDRESS is final: its default follows that address).
    os.environ["SFCLOUD_PORTAL_ADDRESS"] = address
    agents_address = read("SFCLOUD_PORTAL_AGENTS_ADDRESS")
    runner.env["SFCLOUD_PORTAL_AGENTS_ADDRESS"] = agents_address
    runner.env.setdefault("SFCLOUD_PORTAL_URL", f"https://{agents_address}")
    load_secret(state_dir, create=True)  # shared by the portal and the agent

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Set both explicitly: a shell starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runner.ensure_certificates()
        # After the certificates: the portal's user is lent the portal's.
        runner.prepare_portal_user()
        runner.start_etcd()
        runner.start_libvirt()
        runner.say("preparing the demo image (the first time this builds it, ~1 minute)")
        demo = ensure_guest_image(state_dir / "cache" / "guest-image") / "disk.qcow2"
        privacy.tighten(state_dir / "cache")  # the agent copies it; nobody else reads it
        secrets = runner.prepare_portal(demo)
        runner.start_services()
        runner.banner(secrets)
        return runner.wait()
    except KeyboardInterrupt:
        print()
        return 0
    except (RuntimeError, subprocess.CalledProcessError, pki.PkiError) as exc:
        runner.say(f"failed: {exc}")
        return 1
    finally:
        runner.stop_all()


if __name__ == "__main__":
    sys.exit(main())
