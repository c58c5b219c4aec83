"""What each ``sfcloud-deploy`` verb does, step by step.

Every verb starts from cloud.yml (read again each time) and ends with the
cloud converged to it: ``site.yml`` on the nodes, with the variables
deploy.inventory works out. What Ansible can't decide alone is done here,
between plays, against the running cloud (deploy.cluster): etcd members
join as learners and are promoted once caught up, removed members leave
etcd before their node goes, upgrades go node by node and wait for each to
be healthy before the next.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudstate import tls
from deploy import cloudconfig, inventory, pki, playbook, release
from deploy.cloudconfig import CloudConfig, NodeConfig
from deploy.cluster import Cluster, ClusterError
from deploy.deploydir import DeployDir
from deploy.pki import CertificateAuthority, Subject

DEPLOYED = "deployed.json"
Say = Callable[[str], object]


class DeployError(Exception):
    """A verb can't go on; the message says what to do."""


@dataclass
class Context:
    """One run of sfcloud-deploy."""

    deploy_dir: DeployDir
    say: Say = print
    verbose: bool = False
    plays: list[playbook.RunResult] = dataclasses.field(default_factory=list)

    # --- what is deployed ------------------------------------------------------------

    def config(self) -> CloudConfig:
        return cloudconfig.load(self.deploy_dir.path)

    def cluster(self, config: CloudConfig) -> Cluster:
        return Cluster(self.deploy_dir.pki, [n.address for n in config.etcd_nodes])

    def deployed_release(self, config: CloudConfig) -> release.Release:
        """The release the nodes run (built from ``source`` the first time)."""
        path = self.deploy_dir.path / DEPLOYED
        if path.exists():
            data = json.loads(path.read_text())
            found = release.Release(data["release"], data["deps"], Path(data["source"]),
                                    Path(data["tarball"]), Path(data["wheelhouse"]))
            if found.tarball.exists() and found.wheelhouse.exists():
                return found
        return self.build_release(config.source)

    def build_release(self, source: str) -> release.Release:
        try:
            return release.build(Path(source), self.deploy_dir.releases, say=self.say)
        except release.ReleaseError as exc:
            raise DeployError(str(exc)) from None

    def record_release(self, built: release.Release) -> None:
        path = self.deploy_dir.path / DEPLOYED
        path.write_text(json.dumps({
            "release": built.id, "deps": built.deps_id, "source": str(built.source),
            "tarball": str(built.tarball), "wheelhouse": str(built.wheelhouse),
            "at": time.time()}, indent=1) + "\n")

    def demo_image(self, config: CloudConfig) -> str:
        if config.demo_image:
            if not Path(config.demo_image).is_file():
                raise DeployError(f"demo_image: {config.demo_image} is not a file")
            return config.demo_image
        from deploy.guestimage import ensure_guest_image  # noqa: PLC0415 - builds rarely

        self.say("building the demo guest image (the first time only, about a minute)")
        return str(ensure_guest_image(self.deploy_dir.path / "guest-image") / "disk.qcow2")

    # --- running plays -------------------------------------------------------------------

    def play(self, config: CloudConfig, plan: inventory.EtcdPlan, name: str = "site.yml", *,
             limit: list[str] | None = None, built: release.Release | None = None,
             switch_release: bool = True, extra_vars: dict[str, str] | None = None,
             what: str = "") -> playbook.RunResult:
        built = built or self.deployed_release(config)
        try:
            inv = inventory.build(config, self.deploy_dir, built, plan,
                                  demo_image=self.demo_image(config),
                                  switch_release=switch_release)
        except inventory.InventoryError as exc:
            raise DeployError(f"cloud.yml: {exc}") from None
        inventory.write(self.deploy_dir, inv)
        self.say(f"{what or name}: {', '.join(limit or config.names)}")
        try:
            result = playbook.run(self.deploy_dir, name, limit=limit or (),
                                  extra_vars=extra_vars, verbose=self.verbose, say=self.say)
        except playbook.PlaybookFailed as exc:
            raise DeployError(str(exc)) from None
        self.plays.append(result)
        changed = ", ".join(f"{h} {r.changed}" for h, r in sorted(result.hosts.items()))
        self.say(f"  done in {result.seconds:.1f} s; changed: {changed}")
        return result

    # --- certificates ------------------------------------------------------------------

    def issue_certificates(self, config: CloudConfig, plan: inventory.EtcdPlan) -> None:
        ca = CertificateAuthority(self.deploy_dir.pki)
        if ca.ensure():
            self.say(f"made the cloud's CA in {self.deploy_dir.pki}")
        ca.ensure_crl()
        for role, name, addresses in inventory.subjects(config, plan):
            issued = ca.ensure_issued(
                Subject(role, name, tuple(ipaddress.ip_address(a) for a in addresses)),
                renew_days=30)
            if issued is not None:
                self.say(f"issued {issued.path.name}")


# --- converging ----------------------------------------------------------------------


def converge(ctx: Context, config: CloudConfig, *, built: release.Release | None = None,
             what: str = "converge") -> None:
    """Bring every node to cloud.yml: found etcd if there is none, join each
    etcd node that is not a voting member yet (a learner, promoted once it
    has caught up), then one run over every node."""
    cluster = ctx.cluster(config)
    token = f"sfcloud-{config.name}-{secrets.token_hex(4)}"
    members = cluster.members()
    converged_with: tuple[str, ...] | None = None  # the voting members of the last full run
    if members is None:
        plan = inventory.plan_from_members(config, None, token=token)
        ctx.issue_certificates(config, plan)
        ctx.play(config, plan, built=built, what=f"{what} (founding etcd on {plan.voting[0]})")
        if cluster.members() is None:
            raise DeployError("etcd did not answer after it was started")
        converged_with = plan.voting
    for node in config.etcd_nodes:
        if any(m.name == node.name for m in cluster.voting()):
            continue
        join_etcd(ctx, config, node, cluster, token, built=built)
        converged_with = None
    plan = inventory.plan_from_members(config, cluster.members())
    if converged_with != plan.voting:
        ctx.issue_certificates(config, plan)
        ctx.play(config, plan, built=built, what=what)
    try:
        cluster.wait_alive(config.names)
    except ClusterError as exc:
        raise DeployError(str(exc)) from None


def join_etcd(ctx: Context, config: CloudConfig, node: NodeConfig, cluster: Cluster,
              token: str, *, built: release.Release | None = None) -> None:
    ctx.say(f"{node.name} joins etcd as a learner")
    try:
        cluster.add_learner(node.address)
    except Exception as exc:  # noqa: BLE001 - etcd's own refusal, said as it is
        raise DeployError(f"etcd refused {node.name} as a learner: {exc}") from None
    plan = inventory.plan_from_members(config, cluster.members(), joining=node.name,
                                       token=token)
    ctx.issue_certificates(config, plan)
    # Its etcd and agent only: a portal on it starts in the run over every
    # node that follows, which first lets it into the database node's PostgreSQL.
    ctx.play(config, plan, limit=[node.name], built=built, what=f"starting {node.name}",
             extra_vars={"sfcloud_etcd_learner_run": "true"})
    try:
        cluster.promote(node.address)
    except ClusterError as exc:
        raise DeployError(str(exc)) from None
    ctx.say(f"{node.name} is a voting etcd member")


# --- the verbs -----------------------------------------------------------------------


def init(ctx: Context, *, name: str, address: str, cloud: str, service_manager: str,
         database: str, source: str, ssh: cloudconfig.SshConfig,
         demo_image: str | None, portal_port: int, origins: tuple[str, ...]) -> CloudConfig:
    path = ctx.deploy_dir.path / cloudconfig.CONFIG_FILE
    if path.exists():
        raise DeployError(f"{path} exists: this cloud is made already (`sfcloud-deploy "
                          "apply` converges it again)")
    try:
        config = CloudConfig(
            name=cloud, service_manager=service_manager, database=database, source=source,
            ssh=ssh, demo_image=demo_image,
            portal=cloudconfig.PortalConfig(port=portal_port, origins=origins),
            nodes=(NodeConfig(name=name, address=address, etcd=True, portal=True,
                              network_node=True),)).validated()
    except cloudconfig.ConfigError as exc:
        raise DeployError(str(exc)) from None
    ctx.deploy_dir.prepare()
    built = ctx.build_release(source)
    cloudconfig.save(ctx.deploy_dir.path, config)
    ctx.record_release(built)
    converge(ctx, config, built=built, what=f"making {name} a cloud")
    return config


def apply(ctx: Context) -> CloudConfig:
    config = ctx.config()
    ctx.deploy_dir.prepare()
    converge(ctx, config)
    return config


def add_node(ctx: Context, node: NodeConfig) -> CloudConfig:
    config = ctx.config()
    if node.name in config.names:
        if config.node(node.name) != node:
            raise DeployError(f"{node.name} is in cloud.yml already, as "
                              f"{config.node(node.name).to_dict()}: edit cloud.yml and run "
                              "`sfcloud-deploy apply` to change it")
        ctx.say(f"{node.name} is in cloud.yml already: converging again")
    else:
        try:
            config = config.with_node(node)
        except cloudconfig.ConfigError as exc:
            raise DeployError(str(exc)) from None
        cloudconfig.save(ctx.deploy_dir.path, config)
    converge(ctx, config, what=f"adding {node.name}")
    return config


def remove_node(ctx: Context, name: str, *, force: bool = False) -> CloudConfig:
    """Take a node out of the cloud: refused while it holds instances (unless
    forced: they then show unreachable until deleted) or when etcd would
    lose its quorum; its etcd member leaves first; its certificates are
    revoked and every other node told before it is stopped."""
    config = ctx.config()
    node = config.node(name)
    if node.portal and len(config.portal_nodes) == 1:
        raise DeployError(f"{name} runs the cloud's only portal: add a portal on another "
                          "node first")
    if node.network_node:
        raise DeployError(f"{name} is the network node: there is one, and it can't move yet")
    if config.database_node is not None and config.database_node.name == name:
        raise DeployError(f"{name} holds the portals' database")
    try:
        remaining = config.without_node(name)
    except cloudconfig.ConfigError as exc:
        raise DeployError(str(exc)) from None
    cluster = ctx.cluster(config)
    held = cluster.instances_on(name)
    if held and not force:
        raise DeployError(f"{name} still holds {len(held)} instances ({', '.join(held[:10])}"
                          f"{', ...' if len(held) > 10 else ''}): delete them first, or "
                          "--force to delete them with the node")
    api = PortalApi.of(ctx, config)
    api.call("POST", f"/nodes/{name}/maintenance", {"maintenance": True}, missing_ok=True)
    if node.etcd:
        try:
            cluster.check_removal_keeps_quorum(node.address)
        except ClusterError as exc:
            raise DeployError(str(exc)) from None
        if cluster.remove(node.address):
            ctx.say(f"{name} left etcd")
    revoke_node(ctx, config, node)
    plan = inventory.plan_from_members(remaining, ctx.cluster(remaining).members())
    # The others learn of the revocation (and of etcd without it) first.
    ctx.play(remaining, plan, what=f"telling the others {name} is gone")
    reachable = _stop_node(ctx, config, node)
    cloudconfig.save(ctx.deploy_dir.path, remaining)
    try:
        api.call("DELETE", f"/nodes/{name}", missing_ok=True)
    except DeployError as exc:
        # Forced with instances there: the portal keeps the node, offline,
        # and shows them unreachable until they are deleted.
        ctx.say(f"the portal keeps {name} for now: {exc}")
    if not reachable:
        ctx.say(f"{name} did not answer: its services were not stopped there, but its "
                "certificates are revoked, so nothing of the cloud lets it in")
    return remaining


def revoke_node(ctx: Context, config: CloudConfig, node: NodeConfig) -> None:
    ca = CertificateAuthority(ctx.deploy_dir.pki)
    for role in (tls.ROLE_AGENT, tls.ROLE_ETCD):
        try:
            ca.revoke(Subject(role, node.name))
            ctx.say(f"revoked {role}-{node.name}")
        except pki.PkiError:
            pass
    if node.portal:
        # The portals share one key: the others get a new one, the old is revoked.
        old = (ca.directory / "portal.crt").read_bytes()
        others = [n.address for n in config.portal_nodes if n.name != node.name]
        ca.issue(Subject(tls.ROLE_PORTAL, "portal", tuple(
            ipaddress.ip_address(a) for a in [*others, "127.0.0.1"])), new_key=True)
        ca.revoke_certificate(old)
        ctx.say("gave the other portals a new key, and revoked the one that left with "
                f"{node.name}")


def _stop_node(ctx: Context, config: CloudConfig, node: NodeConfig) -> bool:
    plan = inventory.EtcdPlan(voting=tuple(n.name for n in config.etcd_nodes
                                           if n.name != node.name), running=())
    try:
        ctx.play(config, plan, "remove-node.yml", limit=[node.name],
                 what=f"stopping sfcloud on {node.name}")
    except DeployError as exc:
        ctx.say(f"warning: {exc}")
        return False
    return True


# --- the portal's API ----------------------------------------------------------------


@dataclass
class PortalApi:
    """Shaken Fist's API of the cloud's first portal, as the system namespace."""

    base: str
    key: str
    token: str = ""

    @classmethod
    def of(cls, ctx: Context, config: CloudConfig) -> PortalApi:
        portal = config.portal_nodes[0]
        host = inventory._host(portal.address)  # noqa: SLF001 - one rule for v6 brackets
        return cls(f"http://{host}:{config.portal.port}/api",
                   ctx.deploy_dir.secret("system_key"))

    def _send(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        # The portal's own http:// URL, made here from cloud.yml (S310: no other scheme).
        request = urllib.request.Request(  # noqa: S310
            f"{self.base}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"null")
            except ValueError:
                return exc.code, None

    def call(self, method: str, path: str, body: Any = None, *,
             missing_ok: bool = False) -> Any:
        if not self.token:
            status, answer = self._send("POST", "/auth", {"namespace": "system",
                                                         "key": self.key})
            if status != 200:
                raise DeployError(f"the portal refused the system key ({status}: {answer})")
            self.token = answer["access_token"]
        try:
            status, answer = self._send(method, path, body)
        except OSError as exc:
            raise DeployError(f"the portal at {self.base} does not answer: {exc}") from None
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else answer
            raise DeployError(f"{method} {path}: {status} {message}")
        return answer
