"""The Ansible inventory of one run, made from cloud.yml and the cloud's
state: which hosts, and every variable the roles use.

Everything the roles need is worked out here, in Python, where it is tested
(tests/unit/test_deploy_inventory.py): each node's settings file, its
certificates, how its etcd member is founded or joins. The roles only put
files in place and start services. The file is rewritten at every run
(``inventory.yml`` in the deploy directory, private: it holds the portal's
secrets) and is never edited by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudstate import tls
from cloudstate.settings import BY_NAME
from deploy.cloudconfig import CloudConfig, NodeConfig
from deploy.cluster import client_url, peer_url
from deploy.deploydir import DeployDir
from deploy.release import Release

NODE_STATE = "/var/lib/sfcloud"
NODE_ETC = "/etc/sfcloud"
NODE_PKI = f"{NODE_STATE}/pki"
DEMO_DIR = f"{NODE_STATE}/demo"
DEMO_IMAGE = f"{DEMO_DIR}/disk.qcow2"


class InventoryError(Exception):
    """A setting the deploy would write is refused by sfcloud itself."""


@dataclass(frozen=True)
class EtcdPlan:
    """Who runs etcd in this run, and how a member that has no data yet
    starts: founding a new cluster, or joining the existing one (as a
    learner the deploy added before)."""

    voting: tuple[str, ...]  # names of the voting members: clients' endpoints
    running: tuple[str, ...]  # members whose etcd this run keeps (or gets) running
    initial_cluster: dict[str, str] = field(default_factory=dict)  # name -> peer URL
    initial_state: str = "existing"
    token: str = ""

    def initial_cluster_text(self) -> str:
        return ",".join(f"{name}={url}" for name, url in self.initial_cluster.items())


def node_env(config: CloudConfig, node: NodeConfig, plan: EtcdPlan) -> dict[str, str]:
    """The node's /etc/sfcloud/sfcloud.env (the agent's, and the portal's on
    a portal node)."""
    by_name = {n.name: n for n in config.nodes}
    # Its own member first: the nearest answers first, others on failure.
    voting = sorted(plan.voting, key=lambda name: name != node.name)
    first_portal = config.portal_nodes[0]
    env = {
        "SFCLOUD_STATE_DIR": NODE_STATE,
        "SFCLOUD_PKI_DIR": NODE_PKI,
        "SFCLOUD_CLUSTER": config.name,
        "SFCLOUD_CLUSTER_SECRET_FILE": f"{NODE_ETC}/cluster.secret",
        "SFCLOUD_ETCD_ENDPOINTS": ",".join(client_url(by_name[n].address) for n in voting),
        "SFCLOUD_NODE_NAME": node.name,
        "SFCLOUD_NODE_IP": node.address,
        "SFCLOUD_NETWORK_NODE": "yes" if node.network_node else "no",
        # The demo image is registered as a file (file://): the agent reads such
        # files only from these directories (its state directory's cache/ by default).
        "SFCLOUD_FILE_IMAGE_DIRS": f"{NODE_STATE}/cache,{DEMO_DIR}",
        "SFCLOUD_PORTAL_URL": f"https://{_host(first_portal.address)}:"
                              f"{config.portal.agents_port}",
    }
    if node.portal:
        host = _host(node.address)
        env.update({
            "SFCLOUD_PORTAL_HOST": node.address,
            "SFCLOUD_PORTAL_PORT": str(config.portal.port),
            "SFCLOUD_PORTAL_ADDRESS": f"{host}:{config.portal.port}",
            "SFCLOUD_PORTAL_AGENTS_ADDRESS": f"{host}:{config.portal.agents_port}",
            "SFCLOUD_ALLOWED_HOSTS": ",".join([node.address, *config.portal.allowed_hosts]),
            "SFCLOUD_PORTAL_ORIGINS": ",".join([f"http://{host}:{config.portal.port}",
                                                *config.portal.origins]),
            "SFCLOUD_SECRET_KEY_FILE": f"{NODE_ETC}/secret_key",
            "SFCLOUD_ADMIN_PASSWORD_FILE": f"{NODE_ETC}/admin_password",
            "SFCLOUD_SYSTEM_KEY_FILE": f"{NODE_ETC}/system_key",
            "SFCLOUD_SCHEDULER": config.scheduler,
        })
        if config.database == "postgresql":
            env["SFCLOUD_DATABASE_URL_FILE"] = f"{NODE_ETC}/database.url"
            env["SFCLOUD_REDIS_URL_FILE"] = f"{NODE_ETC}/redis.url"
    env.update(config.settings)
    check_env(env)
    return env


def check_env(env: dict[str, str]) -> None:
    """Refuse a value sfcloud itself would refuse at start, before any node
    gets it."""
    problems = []
    for name, value in env.items():
        declared = BY_NAME.get(name.removesuffix("_FILE"))
        if declared is None:
            problems.append(f"{name}: not an sfcloud setting")
        elif not name.endswith("_FILE"):
            try:
                declared.kind.parse(value)
            except ValueError as exc:
                problems.append(f"{name}={value!r}: {exc} ({declared.kind.accepts})")
    if problems:
        raise InventoryError("; ".join(problems))


def _host(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address


def _file(content: str, owner: str = "root", group: str = "root",
          mode: str = "0600") -> dict[str, str]:
    return {"content": content, "owner": owner, "group": group, "mode": mode}


def pki_files(config: CloudConfig, node: NodeConfig, plan: EtcdPlan,
              deploy_dir: DeployDir) -> dict[str, dict[str, str]]:
    """The node's PKI directory: the CA's certificate and revocation list,
    and the certificates and keys of the parts it runs (each key its
    part's user's alone; the portal's readable by the portal's group).
    Parts pick renewed files up by themselves: no restart follows."""
    wanted = [(f"agent-{node.name}", "root", "root", "0600")]
    if node.name in plan.running:
        wanted.append((f"etcd-{node.name}", "etcd", "etcd", "0600"))
    if node.portal:
        wanted.append(("portal", "root", "sfcloud", "0640"))
    source = deploy_dir.pki
    files = {f"{NODE_PKI}/{name}": _file((source / name).read_text(), mode="0644")
             for name in (tls.CA_CERT, tls.CA_CRL)}
    for stem, owner, group, key_mode in wanted:
        if not (source / f"{stem}.crt").exists():
            # Revoked (a node being removed): the play that stops it needs none.
            continue
        files[f"{NODE_PKI}/{stem}.crt"] = _file((source / f"{stem}.crt").read_text(),
                                                owner, group, "0644")
        files[f"{NODE_PKI}/{stem}.key"] = _file((source / f"{stem}.key").read_text(),
                                                owner, group, key_mode)
    return files


def settings_files(config: CloudConfig, node: NodeConfig, plan: EtcdPlan,
                   deploy_dir: DeployDir) -> dict[str, dict[str, str]]:
    """The node's settings file and the secrets it names (root's, and the
    portal's group's): a change restarts the agent and the portal."""
    env = node_env(config, node, plan)
    text = "# Written by sfcloud-deploy from cloud.yml: edit that, not this.\n" + "".join(
        f"{name}={value}\n" for name, value in sorted(env.items()))
    files = {
        f"{NODE_ETC}/sfcloud.env": _file(text, group="sfcloud", mode="0640"),
        f"{NODE_ETC}/cluster.secret": _file(deploy_dir.secret("cluster.secret") + "\n",
                                            group="sfcloud", mode="0640"),
    }
    if node.portal:
        for secret in portal_secrets(config, deploy_dir):
            files[f"{NODE_ETC}/{secret['name']}"] = _file(secret["content"] + "\n",
                                                          group="sfcloud", mode="0640")
    return files


def subjects(config: CloudConfig, plan: EtcdPlan) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every certificate the cloud's parts need: (role, name, addresses)."""
    wanted: list[tuple[str, str, tuple[str, ...]]] = []
    for node in config.nodes:
        wanted.append((tls.ROLE_AGENT, node.name, (node.address, "127.0.0.1")))
        if node.name in plan.running or node.etcd:
            wanted.append((tls.ROLE_ETCD, node.name, (node.address, "127.0.0.1")))
    wanted.append((tls.ROLE_PORTAL, "portal",
                   tuple(n.address for n in config.portal_nodes) + ("127.0.0.1",)))
    return wanted


def portal_secrets(config: CloudConfig, deploy_dir: DeployDir) -> list[dict[str, str]]:
    found = [{"name": name, "content": deploy_dir.secret(name)}
             for name in ("secret_key", "admin_password", "system_key")]
    database = config.database_node
    if database is not None:
        host = _host(database.address)
        found.append({"name": "database.url", "content":
                      f"postgresql://sfcloud:{deploy_dir.secret('database_password')}"
                      f"@{host}:5432/sfcloud"})
        found.append({"name": "redis.url", "content":
                      f"redis://:{deploy_dir.secret('redis_password')}@{host}:6379/0"})
    return found


def build(config: CloudConfig, deploy_dir: DeployDir, release: Release, plan: EtcdPlan, *,
          demo_image: str = "", switch_release: bool = True,
          nodes: Sequence[NodeConfig] | None = None) -> dict[str, Any]:
    """The inventory as Ansible reads it (YAML)."""
    chosen = list(nodes) if nodes is not None else list(config.nodes)
    database = config.database_node
    hosts: dict[str, Any] = {}
    for node in chosen:
        host: dict[str, Any] = {
            "ansible_host": node.address,
            "sfcloud_address": node.address,
            "sfcloud_env": node_env(config, node, plan),
            "sfcloud_pki_files": pki_files(config, node, plan, deploy_dir),
            "sfcloud_settings_files": settings_files(config, node, plan, deploy_dir),
            "sfcloud_etcd_member": node.name in plan.running,
            "sfcloud_portal_node": node.portal,
            "sfcloud_database_node": database is not None and node.name == database.name,
        }
        if node.name in plan.initial_cluster:
            host.update({
                "sfcloud_etcd_initial_cluster": plan.initial_cluster_text(),
                "sfcloud_etcd_initial_state": plan.initial_state,
                "sfcloud_etcd_token": plan.token,
            })
        hosts[node.name] = host
    ssh = config.ssh
    everyone = {
        "ansible_user": ssh.user,
        "ansible_ssh_private_key_file": ssh.key,
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={ssh.known_hosts}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "sfcloud_service_manager": config.service_manager,
        "sfcloud_database": config.database,
        "sfcloud_deploy_pki": str(deploy_dir.pki),
        # The deploy's own helpers, copied to every node (not the release's).
        "sfcloud_deploy_tools": str(Path(__file__).resolve().parent),
        "sfcloud_deploy_secrets": str(deploy_dir.secrets),
        "sfcloud_deploy_demo_image": demo_image,
        "sfcloud_switch_release": switch_release,
        "sfcloud_portal_addresses": [n.address for n in config.portal_nodes],
        **release.facts(),
    }
    if database is not None:
        everyone["sfcloud_database_password"] = deploy_dir.secret("database_password")
        everyone["sfcloud_redis_password"] = deploy_dir.secret("redis_password")
    return {"all": {"vars": everyone, "children": {"nodes": {"hosts": hosts}}}}


def write(deploy_dir: DeployDir, inventory: dict[str, Any]) -> None:
    text = ("# Written by sfcloud-deploy for its latest run, from cloud.yml: do not edit.\n"
            + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False))
    tmp = deploy_dir.inventory.with_name(".inventory.yml.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(deploy_dir.inventory)


def plan_from_members(config: CloudConfig, members: Sequence[Any] | None, *,
                      joining: str | None = None, token: str = "") -> EtcdPlan:
    """The etcd plan for a run. Without members (no cluster yet) the first
    etcd node of cloud.yml founds it alone; later etcd nodes join one at a
    time (``joining``: the learner being started now)."""
    by_url = {peer_url(n.address): n.name for n in config.nodes}
    if not members:
        founder = config.etcd_nodes[0].name
        return EtcdPlan(voting=(founder,), running=(founder,),
                        initial_cluster={founder: peer_url(config.node(founder).address)},
                        initial_state="new", token=token)
    voting, running, cluster = [], [], {}
    for member in members:
        name = next((by_url[u] for u in member.peer_urls if u in by_url), None)
        if name is None:
            continue  # a member cloud.yml does not know: remove-node's business
        cluster[name] = member.peer_urls[0]
        running.append(name)
        if not member.learner:
            voting.append(name)
    if joining is not None:
        if joining not in running:
            raise InventoryError(f"{joining} must be added to etcd as a learner first")
        return EtcdPlan(voting=tuple(voting), running=tuple(running),
                        initial_cluster={name: cluster[name] for name in running},
                        initial_state="existing", token=token)
    return EtcdPlan(voting=tuple(voting), running=tuple(running))
