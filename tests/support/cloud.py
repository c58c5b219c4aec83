"""A whole sfcloud for integration tests: portal and node agent as real
processes, against a real etcd and the machine's libvirtd.

Each Cloud has its own etcd key prefix, state directory, cluster name and
node name, so several can share one etcd and one libvirtd (and other work on
this machine) without seeing each other. They share the test session's CA
(the etcd server's PKI directory): each node agent gets its own certificate
there, as `make run` issues one, and every link is TLS as users run it.
stop() removes only what it made: its processes, the libvirt domains marked
with its cluster name, its files and its keys.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import libvirt
import requests

from cloudstate import tls
from cloudstate.config import REPO_ROOT, parse_endpoints
from cloudstate.etcd import Etcd
from cloudstate.keys import Keys
from deploy.localetcd import LocalEtcd
from deploy.localvirt import stop_process
from nodeagent.domainxml import DomainOwner, read_owner
from nodeagent.net.names import NetNames
from tests.support.pki import issue_agent

T = TypeVar("T")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

SF_CLIENT = str(Path(sys.executable).with_name("sf-client"))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run() in a thread of its own: once sync Playwright has run in
    this session it keeps an event loop in the test's thread, where
    asyncio.run() is refused."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class ApiClient:
    """Shaken Fist's API as its client uses it: a bearer token from /auth,
    refreshed once on a 401."""

    def __init__(self, base: str, namespace: str, key: str):
        self.base = base
        self.namespace = namespace
        self.key = key
        self.session = requests.Session()
        self._token: str | None = None

    def _auth(self) -> None:
        response = self.session.post(f"{self.base}/auth",
                                     json={"namespace": self.namespace, "key": self.key})
        response.raise_for_status()
        self._token = response.json()["access_token"]

    def request(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
                **kwargs: Any) -> requests.Response:
        """A JSON ``body``, or ``raw`` bytes (an upload's chunk)."""
        if self._token is None:
            self._auth()
        for attempt in range(2):
            response = self.session.request(
                method, f"{self.base}{path}",
                data=raw if raw is not None else None if body is None else json.dumps(body),
                headers={"Authorization": f"Bearer {self._token}",
                         "Content-Type": "application/octet-stream" if raw is not None
                         else "application/json"},
                timeout=60, **kwargs,
            )
            if response.status_code != 401 or attempt:
                return response
            self._auth()
        raise AssertionError("unreachable")

    def get(self, path: str, body: Any = None) -> requests.Response:
        return self.request("GET", path, body)

    def post(self, path: str, body: Any = None) -> requests.Response:
        return self.request("POST", path, body)

    def delete(self, path: str, body: Any = None) -> requests.Response:
        return self.request("DELETE", path, body)


class Cloud:
    def __init__(self, etcd: LocalEtcd, demo_image: Path | None = None, **extra_env: str):
        self.id = secrets.token_hex(4)
        self.cluster = f"test-{self.id}"
        self.node = f"node-{self.id}"
        self.prefix = f"/sfcloud-test-{self.id}"
        self.keys = Keys(self.prefix)
        self.state_dir = Path(tempfile.mkdtemp(prefix=f"sfcloud-test-{self.id}-", dir="/var/tmp"))
        # qemu runs as libvirt-qemu and must reach the disk images below here.
        os.chmod(self.state_dir, 0o711)  # noqa: S103
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # The portal's second listener, where agents send events over TLS.
        self.agents_port = free_port()
        self.agents_address = f"127.0.0.1:{self.agents_port}"
        self.pki_dir = etcd.pki_dir
        self.url = f"http://{self.address}"
        self.api_url = f"{self.url}/api"
        self.admin_password = secrets.token_urlsafe(12)
        self.system_key = secrets.token_urlsafe(24)
        self.demo_image = demo_image
        self.owner = DomainOwner(cluster=self.cluster, node=self.node)
        # Every link and namespace its networks make starts with this tag.
        self.net_names = NetNames.for_cluster(self.cluster, node=self.node)
        self.env = {
            **os.environ,
            "SFCLOUD_STATE_DIR": str(self.state_dir),
            "SFCLOUD_ETCD_ENDPOINTS": etcd.endpoint,
            "SFCLOUD_PKI_DIR": str(self.pki_dir),
            "SFCLOUD_ETCD_PREFIX": self.prefix,
            "SFCLOUD_CLUSTER": self.cluster,
            "SFCLOUD_NODE_NAME": self.node,
            "SFCLOUD_PORTAL_ADDRESS": self.address,
            "SFCLOUD_PORTAL_AGENTS_ADDRESS": self.agents_address,
            "SFCLOUD_PORTAL_URL": f"https://{self.agents_address}",
            # A free port: test clouds run beside each other and beside `make run`.
            "SFCLOUD_PORTAL_JOIN_ADDRESS": f"127.0.0.1:{free_port()}",
            "SFCLOUD_ADMIN_PASSWORD": self.admin_password,
            "SFCLOUD_SYSTEM_KEY": self.system_key,
            "SFCLOUD_FETCH_ALLOW": "127.0.0.0/8",
            "SFCLOUD_VIRT_TYPE": "qemu",
            "SFCLOUD_LOG_LEVEL": "INFO",
            "PYTHONPATH": str(REPO_ROOT),
            "SFCLOUD_CLUSTER_SECRET": secrets.token_urlsafe(48),
            # Its own VXLAN port, so no other cloud's tunnels share its socket.
            "SFCLOUD_VXLAN_PORT": str(free_port(socket.SOCK_DGRAM)),
            # The agent's server takes any free port and registers it.
            "SFCLOUD_AGENT_PORT": "0",
            # The demo image is the one file:// blob; its directory is registered.
            **({"SFCLOUD_FILE_IMAGE_DIRS": str(demo_image.resolve().parent)}
               if demo_image is not None else {}),
            **extra_env,
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.agent: subprocess.Popen[bytes] | None = None
        self.portal: subprocess.Popen[bytes] | None = None
        self._agent_starts = 0

    # --- processes --------------------------------------------------------------------

    def _manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(REPO_ROOT / "manage.py"), *args],
                              env=self.env, check=True, capture_output=True, text=True,
                              cwd=REPO_ROOT)

    def start(self) -> Cloud:
        self.issue_certificates()
        self.prepare()
        self.start_agent()
        self.start_portal()
        return self

    def prepare(self) -> None:
        """The portal's database and the cloud's first records (its agents
        are started apart: bench/simfleet.py starts many)."""
        self._manage("migrate", "--noinput", "-v", "0")
        bootstrap = ["bootstrap"]
        if self.demo_image is not None:
            bootstrap += ["--demo-image", str(self.demo_image)]
        self._manage(*bootstrap)

    def issue_certificates(self) -> None:
        """This cloud's node agent's certificate, from the session's CA."""
        issue_agent(self.pki_dir, self.node)

    def _log(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def log_text(self, name: str) -> str:
        path = self._log(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def start_agent(self, failpoints: str = "", wait: bool = True) -> subprocess.Popen[bytes]:
        self._agent_starts += 1
        env = {**self.env, "SFCLOUD_FAILPOINTS": failpoints}
        with open(self._log("agent"), "ab") as log:
            log.write(f"--- agent start {self._agent_starts} failpoints={failpoints!r}\n".encode())
            self.agent = subprocess.Popen([sys.executable, "-m", "nodeagent"], env=env,
                                          stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        if wait:
            try:
                wait_for(self.node_alive, 30, "the node agent to register")
            except AssertionError as error:
                raise AssertionError(f"{error}\n--- agent log (end):\n"
                                     f"{self.log_text('agent')[-4000:]}") from None
        return self.agent

    def stop_agent(self, kill: bool = False) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.agent.wait(timeout=20)
        self.agent = None

    def start_portal(self) -> None:
        with open(self._log("portal"), "ab") as log:
            self.portal = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "portal.asgi:application",
                 "--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "on",
                 "--ws-per-message-deflate", "false"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            )
        wait_for(self._portal_answers, 30, "the portal to answer")

    def stop_portal(self) -> None:
        if self.portal is not None:
            stop_process(self.portal)
        self.portal = None

    def _portal_answers(self) -> bool:
        try:
            return requests.get(self.api_url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Remove everything it made. Each step runs even when one before it
        failed (libvirtd gone, say), and the first failure is raised last."""
        steps: list[Callable[[], object]] = [
            *(lambda p=process: stop_process(p)
              for process in (self.portal, self.agent) if process is not None),
            self.remove_domains,
            self.remove_network_objects,
            lambda: self.etcd_call(lambda etcd: etcd.delete_prefix(self.prefix + "/")),
            lambda: shutil.rmtree(self.state_dir, ignore_errors=True),
        ]
        failures: list[Exception] = []
        for step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - reported after the other steps
                failures.append(exc)
        if failures:
            raise failures[0]

    # --- talking to it ----------------------------------------------------------------

    def api(self, namespace: str = "system", key: str | None = None) -> ApiClient:
        return ApiClient(self.api_url, namespace, key or self.system_key)

    def make_namespace(self, name: str) -> ApiClient:
        """A namespace with one API key (made directly in the portal's
        database), and a client for it."""
        secret = secrets.token_urlsafe(24)
        code = (
            "from portal.accounts.models import Namespace, ApiKey\n"
            "from portal.accounts.keys import digest\n"
            f"ns, _ = Namespace.objects.get_or_create(name={name!r})\n"
            f"ApiKey.objects.update_or_create(namespace=ns, name='test', "
            f"defaults={{'digest': digest({secret!r})}})\n"
        )
        self._manage("shell", "-c", code)
        return self.api(name, secret)

    def make_person(self, username: str, password: str, roles: dict[str, str]) -> int:
        """A person with these roles (namespace -> role), made directly in
        the portal's database; returns their id."""
        code = (
            "from django.contrib.auth import get_user_model\n"
            "from portal.accounts.models import Membership, Namespace\n"
            f"user = get_user_model().objects.create_user({username!r}, password={password!r})\n"
            f"for name, role in {roles!r}.items():\n"
            "    ns, _ = Namespace.objects.get_or_create(name=name)\n"
            "    Membership.objects.create(user=user, namespace=ns, role=role)\n"
            "print(user.pk)\n"
        )
        return int(self._manage("shell", "-c", code).stdout.strip().splitlines()[-1])

    def sf(self, *args: str, check: bool = True, namespace: str = "system",
           key: str | None = None, cwd: Path | None = None,
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run the real Shaken Fist client against this cloud."""
        env = {**self.env, "SHAKENFIST_API_URL": self.api_url,
               "SHAKENFIST_NAMESPACE": namespace, "SHAKENFIST_KEY": key or self.system_key}
        result = subprocess.run([SF_CLIENT, *args], env=env, capture_output=True, text=True,
                                timeout=timeout, cwd=cwd)
        if check and result.returncode != 0:
            raise AssertionError(
                f"sf-client {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def new_etcd(self) -> Etcd:
        """A client of this cloud's etcd, with the portal's certificate."""
        return Etcd(parse_endpoints(self.env["SFCLOUD_ETCD_ENDPOINTS"]),
                    tls=tls.portal(self.pki_dir))

    def sf_library(self, namespace: str = "system", key: str | None = None) -> Any:
        """Shaken Fist's Python API client (shakenfist_client.apiclient), as a
        Shaken Fist user's script would make it."""
        from shakenfist_client import apiclient

        return apiclient.Client(base_url=self.api_url, namespace=namespace,
                                key=key or self.system_key,
                                suppress_configuration_lookup=True,
                                async_strategy=apiclient.ASYNC_BLOCK)

    def etcd_call(self, fn: Callable[[Etcd], Any]) -> Any:
        async def run() -> Any:
            etcd = self.new_etcd()
            try:
                return await fn(etcd)
            finally:
                await etcd.close()

        return run_async(run())

    def etcd_keys(self, prefix: str = "") -> list[str]:
        kvs, _ = self.etcd_call(lambda etcd: etcd.get_prefix(self.prefix + "/" + prefix))
        return [kv.key for kv in kvs]

    def node_alive(self) -> bool:
        kv = self.etcd_call(lambda etcd: etcd.get(self.keys.node_alive(self.node)))
        return kv is not None

    # --- what is on the machine ---------------------------------------------------------

    def instance_dir(self, uuid: str) -> Path:
        return self.state_dir / "node" / self.node / "instances" / uuid

    def event_spool(self) -> list[Path]:
        """Events the agent holds because the portal has not acknowledged them."""
        spool = self.state_dir / "node" / self.node / "event-spool"
        return sorted(spool.glob("*.json")) if spool.exists() else []

    def image_cache_dir(self) -> Path:
        return self.state_dir / "node" / self.node / "images"

    def console_log(self, uuid: str) -> str:
        path = self.instance_dir(uuid) / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_console(self, uuid: str, marker: str, timeout: float = 90) -> str:
        return wait_for(lambda: marker in (text := self.console_log(uuid)) and text,
                        timeout, f"{marker!r} on the serial console of {uuid}", interval=0.2)

    def domains(self) -> dict[str, str]:
        """uuid -> libvirt state of every domain this cloud owns."""
        conn = libvirt.open("qemu:///system")
        try:
            found = {}
            for dom in conn.listAllDomains(0):
                try:
                    owner = read_owner(ET.fromstring(dom.XMLDesc(0)))
                    if owner is not None and owner.cluster == self.cluster:
                        found[dom.UUIDString()] = dom.state()[0]
                except libvirt.libvirtError:
                    continue
            return found
        finally:
            conn.close()

    def remove_domains(self) -> None:
        if self.env.get("SFCLOUD_LIBVIRT_URI", "").startswith("test:"):
            return  # simulated nodes: their domains lived in their agents' memory
        conn = libvirt.open("qemu:///system")
        try:
            for dom in conn.listAllDomains(0):
                try:
                    owner = read_owner(ET.fromstring(dom.XMLDesc(0)))
                    if owner is None or owner.cluster != self.cluster:
                        continue
                    if dom.isActive():
                        dom.destroy()
                    dom.undefine()
                except libvirt.libvirtError:
                    continue
        finally:
            conn.close()

    # --- networks on the machine --------------------------------------------------------

    def dnsmasq_pids(self) -> list[int]:
        """dnsmasq processes serving this cloud (their configuration lies in its state dir)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"dnsmasq") and any(
                    str(self.state_dir).encode() in arg for arg in argv[1:]):
                found.append(int(entry.name))
        return found

    def network_objects(self, netns: str | None = None) -> dict[str, list[str]]:
        """What of this cloud's networking exists: namespaces, links (in the
        root namespace, or ``netns``), dnsmasq processes and nft tables."""
        names = self.net_names
        namespaces = sorted(n for n in os.listdir("/run/netns") if n.startswith(names.tag)) \
            if os.path.isdir("/run/netns") else []
        argv = ["ip", *(["-n", netns] if netns else []), "-o", "link", "show"]
        links = []
        for line in subprocess.run(argv, capture_output=True, text=True, check=True).stdout \
                .splitlines():
            name = line.split(":", 2)[1].strip().split("@")[0]
            if name.startswith(names.tag):
                links.append(name)
        argv = ["nft", "list", "tables"]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        tables = [line.split()[-1] for line in subprocess.run(
            argv, capture_output=True, text=True, check=True).stdout.splitlines()
            if line.split()[-1].startswith(names.tag)]
        return {"namespaces": namespaces, "links": sorted(links), "tables": tables,
                "dnsmasq": [str(pid) for pid in self.dnsmasq_pids()]}

    def remove_network_objects(self) -> None:
        """Whatever of ours the agent left (a failed test): by pid, by tag."""
        for pid in self.dnsmasq_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        names = self.net_names
        if os.path.isdir("/run/netns"):
            for namespace in os.listdir("/run/netns"):
                if namespace.startswith(names.tag):
                    subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        for name in self.network_objects()["links"]:
            subprocess.run(["ip", "link", "del", name], capture_output=True)
        # The security groups' tables outlive a stopped agent (a restarted one
        # keeps filtering): this cloud's go with it.
        for family in ("bridge", "inet"):
            subprocess.run(["nft", "delete", "table", family, names.filter_table],
                           capture_output=True)
