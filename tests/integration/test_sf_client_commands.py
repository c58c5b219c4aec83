"""Every command of Shaken Fist's client (``sf-client`` 0.8.3), and whether
sfcloud supports it: the README's compatibility table, kept true.

``COMMANDS`` has one entry per command: ``Runs(scenario)`` runs the real
client against a cloud and checks what it did; ``Not(reason)`` says why a
command is not offered. The tests check that the table names exactly the
client's commands, that the README's table says the same, and run every
supported scenario. A newly supported command moves from ``Not`` to
``Runs`` with its scenario (and its README row to "yes").
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest

from cloudstate.model import NodeInfo
from tests.support.cloud import ApiClient, Cloud, wait_for
from tests.support.fixtures_networks import create_instance, create_network
from tests.support.objects import mark_torn_down, put_instance

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"
BOOT = 180


@dataclass
class World:
    """What the scenarios share: a running guest on a network with DNS, and
    the cloud (with a floating network) they run against."""

    cloud: Cloud
    image_url: str
    network: dict
    instance: dict
    made: list[str] = field(default_factory=list)

    def sf(self, *args: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.cloud.sf(*args, check=check, **kwargs)

    def sf_json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.sf("--json", *args, **kwargs).stdout)

    def unique(self, stem: str) -> str:
        return f"{stem}-{secrets.token_hex(3)}"

    @property
    def api(self) -> Any:
        return self.cloud.api()

    def instance_state(self, uuid: str) -> dict:
        return self.api.get(f"/instances/{uuid}").json()

    def power(self, uuid: str, state: str) -> None:
        wait_for(lambda: self.instance_state(uuid)["power_state"] == state, 60,
                 f"instance {uuid} to be {state}")

    def ghost(self, namespace: str = "system") -> str:
        """An instance on a node that does not exist: it never boots."""
        return put_instance(self.cloud, namespace, self.unique("ghost"))

    def namespace(self) -> str:
        name = self.unique("compat")
        assert self.api.post("/auth/namespaces", {"namespace": name}).status_code == 200
        return name

    def network_of_its_own(self) -> dict:
        return create_network(self.cloud, self.unique("n"), "10.61.0.0/24", provide_nat=False)

    def tenant(self) -> Tenant:
        """A namespace of its own with a key, for storage a scenario cleans up."""
        return Tenant(self.cloud, self.cloud.make_namespace(self.unique("st")))


@dataclass
class Tenant:
    """The client run as a namespace's key."""

    cloud: Cloud
    api: ApiClient

    @property
    def namespace(self) -> str:
        return self.api.namespace

    def sf(self, *args: str, **options: Any) -> subprocess.CompletedProcess:
        return self.cloud.sf(*args, namespace=self.namespace, key=self.api.key, **options)

    def sf_json(self, *args: str, **options: Any) -> Any:
        return json.loads(self.sf("--json", *args, **options).stdout)

    def upload(self, name: str, data: bytes, *options: str) -> str:
        """Upload ``data`` as the artifact ``name``; its uuid."""
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "file.bin"
            path.write_bytes(data)
            out = self.sf("artifact", "upload", *options, name, str(path)).stdout
        found = re.search(r"Created artifact ([0-9a-f-]{36})", out)
        assert found, out
        return found.group(1)

    def clean(self) -> None:
        self.sf("namespace", "clean", "--confirm", "--namespace", self.namespace)


Scenario = Callable[[World], None]


@dataclass(frozen=True)
class Runs:
    scenario: Scenario


@dataclass(frozen=True)
class Not:
    reason: str


IN_GUEST_AGENT = "needs Shaken Fist's in-guest agent, which sfcloud does not have: not offered"


# --- instances ---------------------------------------------------------------------------------


def instance_create(w: World) -> None:
    name = w.unique("made")
    shown = w.sf_json("instance", "create", name, "1", "128", "-d", "1@demo", "-n",
                      w.network["name"])
    assert shown["state"] == "created" and shown["name"] == name
    w.made.append(shown["uuid"])


def instance_show(w: World) -> None:
    out = w.sf("instance", "show", w.instance["uuid"]).stdout
    assert w.instance["uuid"] in out and "created" in out
    shown = w.sf_json("instance", "show", "-s", w.instance["uuid"])
    assert shown["uuid"] == w.instance["uuid"] and shown["network_interfaces"]
    assert "snapshots" in shown


def instance_list(w: World) -> None:
    listed = w.sf_json("instance", "list")
    assert w.instance["uuid"] in [i["uuid"] for i in listed["instances"]]
    assert w.instance["name"] in w.sf("instance", "list").stdout


def instance_delete(w: World) -> None:
    uuid = w.ghost()
    w.sf("--async", "continue", "instance", "delete", uuid)
    assert w.instance_state(uuid)["state"] == "deleting"
    mark_torn_down(w.cloud, uuid)
    assert w.instance_state(uuid)["state"] == "deleted"


def instance_delete_all(w: World) -> None:
    namespace = w.namespace()
    uuids = [w.ghost(namespace), w.ghost(namespace)]
    w.sf("--async", "continue", "instance", "delete-all", "--confirm", "--namespace", namespace)
    for uuid in uuids:
        assert w.instance_state(uuid)["state"] == "deleting"
        mark_torn_down(w.cloud, uuid)


def instance_metadata(w: World) -> None:
    uuid = w.instance["uuid"]
    w.sf("instance", "set-metadata", uuid, "tags", '["a", "b"]')
    assert w.api.get(f"/instances/{uuid}/metadata").json()["tags"] == ["a", "b"]
    w.sf("instance", "delete-metadata", uuid, "tags")
    assert "tags" not in w.api.get(f"/instances/{uuid}/metadata").json()


def instance_power(verb: str, before: str | None, after: str) -> Scenario:
    def scenario(w: World) -> None:
        uuid = w.instance["uuid"]
        if before is not None:
            w.api.post(f"/instances/{uuid}/{before}")
            w.power(uuid, "paused" if before == "pause" else "off")
        w.sf("instance", verb, uuid)
        w.power(uuid, after)
        if after != "on":  # leave it running for the next scenario
            w.api.post(f"/instances/{uuid}/{'unpause' if after == 'paused' else 'poweron'}")
            w.power(uuid, "on")

    return scenario


def instance_reboot(w: World) -> None:
    uuid = w.instance["uuid"]
    boots = w.cloud.console_log(uuid).count("SFCLOUD-GUEST-UP")
    w.sf("instance", "reboot", "--hard", uuid)
    wait_for(lambda: w.cloud.console_log(uuid).count("SFCLOUD-GUEST-UP") > boots, BOOT,
             "the guest to boot again")
    w.cloud.wait_console(uuid, "SFCLOUD-READY", BOOT)


def instance_snapshot(w: World) -> None:
    label = w.unique("snap")
    taken = w.sf_json("instance", "snapshot", "-l", label, w.instance["uuid"])
    artifact = taken["vda"]["artifact_uuid"]
    assert w.api.get(f"/artifacts/{artifact}").json()["state"] == "created"
    # -l also points a label at the snapshot's blob.
    assert w.api.get(f"/label/{label}").json()["blob_uuid"] == taken["vda"]["blob_uuid"]
    w.api.delete(f"/label/{label}")
    w.api.delete(f"/artifacts/{artifact}")


def instance_events(w: World) -> None:
    events = w.sf_json("instance", "events", "-t", "audit", "-l", "5", w.instance["uuid"])
    assert events and {e["type"] for e in events} == {"audit"}


def instance_consoledata(w: World) -> None:
    assert "SFCLOUD-GUEST-UP" in w.sf("instance", "consoledata", w.instance["uuid"], "--",
                                      "-1").stdout


def instance_consoledelete(w: World) -> None:
    uuid = w.instance["uuid"]
    w.sf("instance", "consoledelete", uuid)
    wait_for(lambda: "SFCLOUD-GUEST-UP" not in w.cloud.console_log(uuid), 30,
             "the console log to be cleared")


def instance_add_interface(w: World) -> None:
    uuid = w.instance["uuid"]
    w.sf("instance", "add-interface", uuid, "-n", w.network["name"])  # prints nothing
    nics = w.api.get(f"/instances/{uuid}/interfaces").json()
    assert [nic["order"] for nic in nics] == [0, 1]
    added = nics[1]
    assert added["network_uuid"] == w.network["uuid"] and added["ipv4"]
    w.cloud.wait_console(uuid, f"SFCLOUD-HOTPLUG: eth1 {added['ipv4']}/", BOOT)
    w.api.delete(f"/instances/{uuid}/interfaces/{added['uuid']}")
    w.cloud.wait_console(uuid, "SFCLOUD-UNPLUG: eth1", BOOT)


# --- interfaces --------------------------------------------------------------------------------


def interface_show_float_defloat(w: World) -> None:
    nic = w.instance["interfaces"][0]["uuid"]
    assert nic in w.sf("interface", "show", nic).stdout
    w.sf("interface", "float", nic)
    assert w.api.get(f"/interfaces/{nic}").json()["floating"]
    w.sf("interface", "defloat", nic)
    assert w.api.get(f"/interfaces/{nic}").json()["floating"] is None


# --- artifacts ---------------------------------------------------------------------------------


def artifact_cache_list_show_events_delete(w: World) -> None:
    url = w.image_url + f"?compat-{secrets.token_hex(2)}"
    w.sf("artifact", "cache", url)
    uuid = next(a["uuid"] for a in w.sf_json("artifact", "list") if a["source_url"] == url)
    wait_for(lambda: w.sf_json("artifact", "show", uuid)["state"] == "created", 120,
             "the artifact to be cached")
    assert w.sf_json("artifact", "events", uuid)
    w.sf("artifact", "delete", uuid)
    assert uuid not in [a["uuid"] for a in w.sf_json("artifact", "list")]


def artifact_versions(w: World) -> None:
    tenant = w.tenant()
    first, second = b"one" * 400_000, b"two" * 400_000
    uuid = tenant.upload("notes", first)
    assert tenant.upload("notes", second, "--no-checksum") == uuid
    assert [v["index"] for v in tenant.sf_json("artifact", "versions", uuid)] == [1, 2]
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "back.bin"
        tenant.sf("artifact", "download", uuid, str(target))
        assert target.read_bytes() == second
    tenant.sf("artifact", "max-versions", uuid, "1")
    assert [v["index"] for v in tenant.sf_json("artifact", "versions", uuid)] == [2]
    tenant.sf("artifact", "delete-version", uuid, "2")
    assert tenant.api.get(f"/artifacts/{uuid}").json()["state"] == "deleted"
    tenant.clean()


def blobs_and_labels(w: World) -> None:
    tenant = w.tenant()
    data = secrets.token_bytes(1 << 20)
    uuid = tenant.upload("alpha", data)
    blob = tenant.api.get(f"/artifacts/{uuid}").json()["blob_uuid"]
    assert blob in [b["uuid"] for b in tenant.sf_json("blob", "list")]
    assert tenant.sf_json("blob", "show", blob)["locations"] == [w.cloud.node]
    assert blob in tenant.sf("blob", "sha512", hashlib.sha512(data).hexdigest()).stdout
    assert tenant.sf_json("blob", "events", blob)
    tenant.sf("label", "update", "pinned", blob)
    assert tenant.api.get("/label/pinned").json()["blob_uuid"] == blob
    tenant.clean()


def artifact_sharing(w: World) -> None:
    tenant = w.tenant()
    system = Tenant(w.cloud, w.cloud.api())
    common = system.upload(w.unique("common"), secrets.token_bytes(4096))

    def listed() -> list[str]:
        return [a["uuid"] for a in tenant.sf_json("artifact", "list")]

    assert common not in listed()
    w.sf("artifact", "share", common)
    assert common in listed()
    w.sf("artifact", "unshare", common)
    assert common not in listed()
    w.sf("artifact", "delete", common)
    tenant.clean()


def backup_and_clean(w: World) -> None:
    tenant = w.tenant()
    uuid = tenant.upload("kept", secrets.token_bytes(8192))
    blob = tenant.api.get(f"/artifacts/{uuid}").json()["blob_uuid"]
    with tempfile.TemporaryDirectory() as directory:
        tenant.sf("backup", "create", "summary.json", cwd=Path(directory))
        summary = json.loads((Path(directory) / "summary.json").read_text())
        assert uuid in summary["artifacts"]
        assert (Path(directory) / "blobs" / blob).stat().st_size == 8192
    tenant.clean()
    assert uuid not in [a["uuid"] for a in tenant.sf_json("artifact", "list")]
    assert tenant.api.get(f"/artifacts/{uuid}").json()["state"] == "deleted"


# --- networks ----------------------------------------------------------------------------------


def network_create_show_list_delete(w: World) -> None:
    name = w.unique("net")
    shown = w.sf_json("network", "create", name, "10.62.0.0/24", "--dns")
    assert shown["state"] == "created" and shown["provide_dns"] is True
    assert name in w.sf("network", "show", name).stdout
    assert name in [n["name"] for n in w.sf_json("network", "list")]
    w.sf("network", "delete", name)
    wait_for(lambda: w.api.get(f"/networks/{shown['uuid']}").json()["state"] == "deleted", 60,
             "the network to be deleted")


def network_delete_all(w: World) -> None:
    namespace = w.namespace()
    made = w.api.post("/networks", {"name": "gone", "netblock": "10.63.0.0/24",
                                    "provide_nat": False, "namespace": namespace}).json()
    w.sf("network", "delete-all", "--confirm", "--namespace", namespace)
    wait_for(lambda: w.api.get(f"/networks/{made['uuid']}").json()["state"] == "deleted", 60,
             "the network to be deleted")


def network_metadata_events(w: World) -> None:
    name = w.network["name"]
    w.sf("network", "set-metadata", name, "owner", "ops")
    assert w.api.get(f"/networks/{name}/metadata").json()["owner"] == "ops"
    w.sf("network", "delete-metadata", name, "owner")
    assert w.sf_json("network", "events", name)


def network_instances_addresses(w: World) -> None:
    name = w.network["name"]
    address = w.instance["interfaces"][0]["ipv4"]
    assert address in w.sf("network", "instances", name).stdout
    simple = w.sf("--simple", "network", "addresses", name).stdout
    assert f"instance {w.instance['uuid']}" in simple and address in simple


def network_ping(w: World) -> None:
    out = w.sf("network", "ping", w.network["name"], w.instance["interfaces"][0]["ipv4"]).stdout
    assert "bytes from" in out and "0% packet loss" in out


def network_routed(w: World) -> None:
    name = w.network["name"]
    address = w.sf("network", "add-routed", name).stdout.strip().strip('"')
    assert address in w.api.get(f"/networks/{name}").json()["routed"]
    w.sf("network", "delete-routed", name, address)
    assert address not in w.api.get(f"/networks/{name}").json()["routed"]


# --- nodes -------------------------------------------------------------------------------------


def node_list_show_events(w: World) -> None:
    node = w.cloud.node
    assert node in [n["name"] for n in w.sf_json("node", "list")]
    assert "cluster maintainer" in w.sf("node", "show", node).stdout
    assert w.sf_json("node", "events", node)


def node_resources_cpuhogs(w: World) -> None:
    # The newest resources event of the node (logged as its agent starts). The
    # client's own table of it crashes (it looks up the key "resource"): --json.
    wait_for(lambda: w.sf("--json", "node", "resources", w.cloud.node,
                          check=False).returncode == 0, 60, "the node's first resources event")
    extra = w.sf_json("node", "resources", w.cloud.node)
    assert extra["is_hypervisor"] is True and extra["cpu_max"] >= 1
    assert w.sf("node", "cpuhogs").returncode == 0


def node_delete(w: World) -> None:
    name = w.unique("gone")
    info = NodeInfo(name=name, ip="192.0.2.97", vcpus=1, memory_mib=1024, disk_total_gb=10,
                    disk_free_gb=5, virt_type="qemu", machine="pc")
    w.cloud.etcd_call(lambda etcd: etcd.put(w.cloud.keys.node(name), info.to_json()))
    w.sf("node", "delete", name)
    assert w.api.get(f"/nodes/{name}").status_code == 404


# --- namespaces --------------------------------------------------------------------------------


def namespace_lifecycle(w: World) -> None:
    name = w.unique("ns")
    w.sf("namespace", "create", name)
    w.sf("namespace", "add-key", name, "ci", "a-first-long-secret")
    w.sf("namespace", "update-key", name, "ci", "a-second-long-secret")
    assert "ci" in w.sf("namespace", "show", name).stdout
    assert name in w.sf("namespace", "list").stdout
    w.sf("namespace", "set-metadata", name, "team", "blue")
    assert "blue" in w.sf("namespace", "get-metadata", name).stdout
    w.sf("namespace", "delete-metadata", name, "team")
    w.sf("namespace", "delete-key", name, "ci")
    w.sf("namespace", "delete", name)
    assert w.api.get(f"/auth/namespaces/{name}").status_code == 404


def namespace_trust(w: World) -> None:
    owner, friend = w.namespace(), w.namespace()
    w.sf("namespace", "add-trust", owner, friend)
    assert friend in w.api.get(f"/auth/namespaces/{owner}").json()["trust"]["full"]
    w.sf("namespace", "remove-trust", owner, friend)
    assert friend not in w.api.get(f"/auth/namespaces/{owner}").json()["trust"]["full"]


def version(w: World) -> None:
    assert w.sf("version").stdout.strip()


# --- the table ---------------------------------------------------------------------------------

COMMANDS: dict[str, Runs | Not] = {
    "version": Runs(version),
    "instance create": Runs(instance_create),
    "instance show": Runs(instance_show),
    "instance list": Runs(instance_list),
    "instance set-metadata": Runs(instance_metadata),
    "instance delete-metadata": Runs(instance_metadata),
    "instance pause": Runs(instance_power("pause", None, "paused")),
    "instance unpause": Runs(instance_power("unpause", "pause", "on")),
    "instance poweroff": Runs(instance_power("poweroff", None, "off")),
    "instance poweron": Runs(instance_power("poweron", "poweroff", "on")),
    "instance reboot": Runs(instance_reboot),
    "instance snapshot": Runs(instance_snapshot),
    "instance events": Runs(instance_events),
    "instance consoledata": Runs(instance_consoledata),
    "instance add-interface": Runs(instance_add_interface),
    "instance consoledelete": Runs(instance_consoledelete),
    "instance delete": Runs(instance_delete),
    "instance delete-all": Runs(instance_delete_all),
    "instance await": Not("client bug: it calls a method its own library does not have"),
    "instance download": Not(IN_GUEST_AGENT),
    "instance execute": Not(IN_GUEST_AGENT),
    "instance upload": Not(IN_GUEST_AGENT),
    "instance screenshot": Not(IN_GUEST_AGENT),
    "instance vdiconsole": Not("the graphical console is in the portal's browser page; no "
                               "SPICE port listens on a hypervisor"),
    "instance vdiconsolefile": Not("the graphical console is in the portal's browser page; "
                                   "no SPICE port listens on a hypervisor"),
    "interface show": Runs(interface_show_float_defloat),
    "interface float": Runs(interface_show_float_defloat),
    "interface defloat": Runs(interface_show_float_defloat),
    "interface set-metadata": Not("interface metadata is not offered"),
    "interface delete-metadata": Not("interface metadata is not offered"),
    "artifact cache": Runs(artifact_cache_list_show_events_delete),
    "artifact list": Runs(artifact_cache_list_show_events_delete),
    "artifact show": Runs(artifact_cache_list_show_events_delete),
    "artifact events": Runs(artifact_cache_list_show_events_delete),
    "artifact delete": Runs(artifact_cache_list_show_events_delete),
    "artifact upload": Runs(artifact_versions),
    "artifact download": Runs(artifact_versions),
    "artifact versions": Runs(artifact_versions),
    "artifact max-versions": Runs(artifact_versions),
    "artifact delete-version": Runs(artifact_versions),
    "artifact share": Runs(artifact_sharing),
    "artifact unshare": Runs(artifact_sharing),
    "artifact set-metadata": Not("client bug: it sends /instances/<ref>/metadata"),
    "artifact delete-metadata": Not("client bug: it sends /instances/<ref>/metadata"),
    "blob list": Runs(blobs_and_labels),
    "blob show": Runs(blobs_and_labels),
    "blob sha512": Runs(blobs_and_labels),
    "blob events": Runs(blobs_and_labels),
    "blob set-metadata": Not("client bug: it sends /instances/<uuid>/metadata"),
    "blob delete-metadata": Not("client bug: it sends /instances/<uuid>/metadata"),
    "label update": Runs(blobs_and_labels),
    "backup create": Runs(backup_and_clean),
    "network create": Runs(network_create_show_list_delete),
    "network show": Runs(network_create_show_list_delete),
    "network list": Runs(network_create_show_list_delete),
    "network delete": Runs(network_create_show_list_delete),
    "network delete-all": Runs(network_delete_all),
    "network set-metadata": Runs(network_metadata_events),
    "network delete-metadata": Runs(network_metadata_events),
    "network events": Runs(network_metadata_events),
    "network instances": Runs(network_instances_addresses),
    "network addresses": Runs(network_instances_addresses),
    "network ping": Runs(network_ping),
    "network add-routed": Runs(network_routed),
    "network delete-routed": Runs(network_routed),
    "node list": Runs(node_list_show_events),
    "node show": Runs(node_list_show_events),
    "node events": Runs(node_list_show_events),
    "node delete": Runs(node_delete),
    "node resources": Runs(node_resources_cpuhogs),
    "node cpuhogs": Runs(node_resources_cpuhogs),
    "namespace create": Runs(namespace_lifecycle),
    "namespace delete": Runs(namespace_lifecycle),
    "namespace list": Runs(namespace_lifecycle),
    "namespace show": Runs(namespace_lifecycle),
    "namespace add-key": Runs(namespace_lifecycle),
    "namespace update-key": Runs(namespace_lifecycle),
    "namespace delete-key": Runs(namespace_lifecycle),
    "namespace get-metadata": Runs(namespace_lifecycle),
    "namespace set-metadata": Runs(namespace_lifecycle),
    "namespace delete-metadata": Runs(namespace_lifecycle),
    "namespace add-trust": Runs(namespace_trust),
    "namespace remove-trust": Runs(namespace_trust),
    "namespace clean": Runs(backup_and_clean),
    "admin lock list": Not("sfcloud takes no cluster-wide locks (etcd transactions instead)"),
}


def client_commands() -> list[str]:
    from shakenfist_client.main import cli

    def walk(command: click.Command, prefix: list[str]) -> list[str]:
        if isinstance(command, click.Group):
            return [name for key, sub in sorted(command.commands.items())
                    for name in walk(sub, [*prefix, key])]
        return [" ".join(prefix)]

    return walk(cli, [])


def readme_table() -> dict[str, str]:
    """command -> "yes"/"no" from the README's compatibility table."""
    text = README.read_text()
    start = text.index("<!-- sf-client commands -->")
    end = text.index("<!-- end of the sf-client commands -->")
    rows = re.findall(r"^\| `([a-z0-9 -]+)` \| (yes|no) \|", text[start:end], re.MULTILINE)
    return dict(rows)


def test_the_table_names_every_command_of_the_client() -> None:
    assert sorted(COMMANDS) == client_commands()


def test_the_readme_says_what_the_table_says() -> None:
    readme = readme_table()
    assert sorted(readme) == client_commands()
    for command, entry in COMMANDS.items():
        assert readme[command] == ("yes" if isinstance(entry, Runs) else "no"), command


@pytest.fixture(scope="module")
def world(netcloud: Cloud, image_server) -> World:  # type: ignore[no-untyped-def]
    network = create_network(netcloud, f"compat-{secrets.token_hex(2)}", "10.60.0.0/24",
                             provide_dns=True)
    instance = create_instance(netcloud, "compat", [{"network_uuid": network["uuid"]}])
    netcloud.wait_console(instance["uuid"], "SFCLOUD-READY", BOOT)
    return World(cloud=netcloud, image_url=image_server.url("/demo.qcow2"), network=network,
                 instance=netcloud.api().get(f"/instances/{instance['uuid']}").json())


# One run per scenario (several commands share one).
SCENARIOS = {id(entry.scenario): (command, entry.scenario)
             for command, entry in COMMANDS.items() if isinstance(entry, Runs)}


@pytest.mark.parametrize("command,scenario", list(SCENARIOS.values()),
                         ids=[command for command, _ in SCENARIOS.values()])
def test_supported_command(world: World, command: str, scenario: Scenario) -> None:
    scenario(world)
