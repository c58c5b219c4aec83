"""Security groups with real guests (TCG), through the whole cloud: the
default group, stateful allow and deny both ways, a remote group changed
live (the connections it allowed cut, others kept), a deleted guest leaving
nothing, spoofing, a floated guest reachable only on tcp/8080 from outside,
and what a refused rule or an agent killed mid-apply leave behind.

Each test works in a namespace of its own (quotas and default groups start
afresh) and its guests report what they reach on their consoles
(tests.support.secguests)."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import time

import pytest

from cloudstate.etcd import Put
from cloudstate.model import SecurityGroup
from tests.support.cloud import ApiClient, Cloud, wait_for
from tests.support.fixtures_networks import delete_instances, namespace_key
from tests.support.networld import UPSTREAM_NETWORK, OutsideWorld, in_netns
from tests.support.pseudoguests import sock
from tests.support.secguests import BOOT, SERVE, Console, boot, flow, probe, serve_on

pytestmark = pytest.mark.integration


def namespace(cloud: Cloud) -> ApiClient:
    name = f"sgt{secrets.token_hex(3)}"
    return cloud.api(name, namespace_key(cloud, name))


def network(api: ApiClient, name: str, netblock: str, **extra: object) -> dict:
    response = api.post("/networks", {"name": name, "netblock": netblock,
                                      "provide_nat": False, **extra})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    return wait_for(lambda: (n := api.get(f"/networks/{uuid}").json())["state"] == "created"
                    and n, 60, f"network {name}")


def group(api: ApiClient, name: str, *rules: dict) -> dict:
    response = api.post("/security-groups", {"name": name, "rules": list(rules)})
    assert response.status_code == 200, response.text
    return response.json()


def set_groups(api: ApiClient, interface: str, groups: list[str]) -> None:
    response = api.request("PUT", f"/interfaces/{interface}/security-groups",
                           {"security_groups": groups})
    assert response.status_code == 200, response.text


def applied(api: ApiClient, interface: str, timeout: float = 30) -> float:
    """Seconds until the interface's hypervisor has its groups in force."""
    started = time.monotonic()
    shown: dict = {}

    def in_force() -> bool:
        shown.update(api.get(f"/interfaces/{interface}").json())
        return shown["filtering"]["state"] == "applied"

    try:
        wait_for(in_force, timeout, f"interface {interface}'s groups applied")
    except AssertionError as error:
        raise AssertionError(f"{error}; the interface shows {shown}") from None
    return time.monotonic() - started


def zone_of(cloud: Cloud, vxid: int, netns: str | None = None) -> int:
    """The conntrack zone of a network's bridge, as the node's tables have it."""
    argv = ["nft", "list", "chain", "inet", cloud.net_names.filter_table, "zones"]
    listed = subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv,
                            capture_output=True, text=True, timeout=30).stdout
    found = re.search(rf'"{cloud.net_names.bridge(vxid)}" : (\d+)', listed)
    assert found, listed
    return int(found.group(1))


def filter_tables(cloud: Cloud, netns: str | None = None) -> str:
    argv = ["nft", "list", "table", "bridge", cloud.net_names.filter_table]
    result = subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv,
                            capture_output=True, text=True, timeout=30)
    return result.stdout


def allows_port(protocol: str, port: int, tables: str) -> bool:
    """Whether a rule of the listed tables lets ``protocol``/``port`` through
    (nft lists a set of one as the element alone)."""
    return re.search(rf"{protocol} dport (\{{ )?{port}\b", tables) is not None


def sent_by(address: str, zone: int) -> str:
    """The connections tracked in ``zone`` that ``address`` started."""
    return subprocess.run(["conntrack", "-L", "-f", "ipv4", "-w", str(zone), "-s", address],
                          capture_output=True, text=True, timeout=30).stdout


def test_default_group_stateful_rules_and_a_remote_group_changed_live(netcloud: Cloud) -> None:
    """Cases 1, 2, 3, 5 and 7 with real guests.

    S serves 8080 (and 9000, ticks) to members of ``clients`` only, and has
    no egress rule; C1 is in default and clients; C2 only in default. Then
    C2 joins clients (reaches S, opens a long flow), leaves it (new
    connections refused, the flow cut, C1's untouched), and is deleted
    (nothing of it stays in the tables or conntrack)."""
    api = namespace(netcloud)
    net = network(api, "sgnet", "10.90.0.0/24")
    group(api, "clients", {"direction": "egress"})
    web = group(api, "web", {"direction": "ingress", "protocol": "tcp", "ports": "8080,9000",
                             "remote": {"group": "clients"}})
    s = boot(api, "s", net["uuid"], "10.90.0.5", [web["uuid"]],
             SERVE + serve_on(2222) + probe("out", "http://10.90.0.11:8080/"))
    c1 = boot(api, "c1", net["uuid"], "10.90.0.11", ["default", "clients"],
              SERVE + probe("s8080", "http://10.90.0.5:8080/")
              + probe("s2222", "http://10.90.0.5:2222/")
              + probe("c2", "http://10.90.0.12:8080/") + flow("10.90.0.5"))
    c2 = boot(api, "c2", net["uuid"], "10.90.0.12", ["default"],
              SERVE + probe("s8080", "http://10.90.0.5:8080/") + flow("10.90.0.5")
              + probe("c1", "http://10.90.0.11:8080/"))
    guests = {vm["name"]: Console(netcloud, vm["uuid"]) for vm in (s, c1, c2)}
    c2_nic = c2["interfaces"][0]
    try:
        for console in guests.values():
            console.wait("SFCLOUD-READY", BOOT)
        # Every guest got its address by DHCP whatever its groups.
        assert "SFCLOUD-IP: eth0 10.90.0.5/24" in guests["s"].text()
        assert "SFCLOUD-IP: eth0 10.90.0.12/24" in guests["c2"].text()
        # Default members reach each other; a client reaches S's 8080 and
        # gets answers (stateful), not 2222; S, without egress, reaches nothing.
        guests["c1"].settled("s8080", "ok")
        guests["c1"].settled("s2222", "no")
        guests["c1"].settled("c2", "ok")
        guests["s"].settled("out", "no")
        guests["c2"].settled("s8080", "no")
        assert guests["c2"].flows() == 0
        wait_for(lambda: guests["c1"].flows() > 2, 60, "c1's flow to S")

        # C2 joins clients: a set element on the hypervisor, then it reaches S.
        for console in guests.values():
            console.mark()
        set_groups(api, c2_nic["uuid"], ["default", "clients"])
        took = applied(api, c2_nic["uuid"])
        guests["c2"].settled("s8080", "ok", 30)
        wait_for(lambda: guests["c2"].flows() > 2, 60, "c2's flow to S")
        assert took < 10, f"applied only after {took:.1f} s"

        # It leaves: new connections refused, its flow cut; C1's flow goes on.
        for console in guests.values():
            console.mark()
        set_groups(api, c2_nic["uuid"], ["default"])
        applied(api, c2_nic["uuid"])
        guests["c2"].settled("s8080", "no", 30)
        time.sleep(2)
        guests["c2"].mark()
        guests["c1"].mark()
        time.sleep(6)
        assert guests["c2"].flows() == 0, "C2's connection outlived its group"
        assert guests["c1"].flows() >= 4, "C1's connection was cut too"

        # C2 deleted: its tap, MAC and address are nowhere in the tables, and
        # no connection it started is tracked any more (C1 still tries to
        # reach its address, which makes entries of C1's).
        zone = zone_of(netcloud, net["vxlan_id"])
        guests["c2"].settled("c1", "ok")  # default members reach each other
        assert "10.90.0.12" in sent_by("10.90.0.12", zone)
        # (The tables follow the interface's release, a moment after the
        # instance reads "deleted".)
        delete_instances(netcloud, c2["uuid"])
        tap = netcloud.net_names.tap(c2_nic["uuid"])
        wait_for(lambda: tap not in filter_tables(netcloud), 30, "C2's port gone")
        listed = filter_tables(netcloud)
        assert listed and c2_nic["macaddr"] not in listed and "10.90.0.12" not in listed
        assert f"{web['uuid'].replace('-', '')}" in listed  # the rest is still there
        wait_for(lambda: "10.90.0.12" not in sent_by("10.90.0.12", zone), 30,
                 "C2's connections gone")
    finally:
        delete_instances(netcloud, *(vm["uuid"] for vm in (s, c1, c2)))
        api.delete(f"/networks/{net['uuid']}")


def test_a_guest_can_only_send_as_itself(netcloud: Cloud) -> None:
    """Case 6 with real guests: X changes its address, then its MAC, and
    reaches V again only as itself; its gratuitous ARP claiming the router's
    address never changes V's idea of where the router is."""
    api = namespace(netcloud)
    net = network(api, "spoofnet", "10.91.0.0/24")
    everyone = group(api, "everyone", {"direction": "ingress"}, {"direction": "egress"})
    v = boot(api, "v", net["uuid"], "10.91.0.5", [everyone["uuid"]], SERVE + """
(while true; do ping -c 1 -W 1 10.91.0.1 >/dev/null 2>&1;
  echo "NEIGH $(ip neigh show 10.91.0.1 | awk '{print $5}')"; sleep 2; done) &
""")
    x = boot(api, "x", net["uuid"], "10.91.0.6", [everyone["uuid"]], """
cat /sys/class/net/eth0/address > /tmp/mac
try() { for i in 1 2 3 4 5; do timeout 3 wget -q -O /dev/null http://10.91.0.5:8080/ && return 0;
        sleep 1; done; return 1; }
report() { if try; then echo "SPOOF $1 ok"; else echo "SPOOF $1 no"; fi; }
(for i in $(seq 120); do timeout 3 wget -q -O /dev/null http://10.91.0.5:8080/ && break
   sleep 1; done
 report own
 ip addr add 10.91.0.66/24 dev eth0; ip addr del 10.91.0.6/24 dev eth0
 report other-address
 ip addr add 10.91.0.6/24 dev eth0; ip addr del 10.91.0.66/24 dev eth0
 report own-address-again
 ip link set eth0 address 02:00:00:66:66:66; ip neigh flush all
 report other-mac
 ip link set eth0 address $(cat /tmp/mac); ip neigh flush all
 report own-mac-again
 ip addr add 10.91.0.1/32 dev eth0
 arping -U -c 3 -I eth0 -s 10.91.0.1 10.91.0.1 >/dev/null 2>&1
 ip addr del 10.91.0.1/32 dev eth0
 echo "SPOOF garp sent $(cat /sys/class/net/eth0/address)") &
""")
    consoles = {vm["name"]: Console(netcloud, vm["uuid"]) for vm in (v, x)}
    try:
        consoles["v"].wait("SFCLOUD-READY", BOOT)
        consoles["x"].wait("SFCLOUD-READY", BOOT)
        lines = consoles["x"]
        lines.wait("SPOOF garp sent " + x["interfaces"][0]["macaddr"], 240)
        spoof = [line for line in lines.lines() if line.startswith("SPOOF ")]
        assert spoof[:5] == ["SPOOF own ok", "SPOOF other-address no",
                             "SPOOF own-address-again ok", "SPOOF other-mac no",
                             "SPOOF own-mac-again ok"], spoof
        time.sleep(5)
        seen = {line.split()[1] for line in consoles["v"].lines()
                if line.startswith("NEIGH ") and len(line.split()) > 1}
        assert seen, "V never learned the router's MAC"
        assert x["interfaces"][0]["macaddr"] not in seen, seen
    finally:
        delete_instances(netcloud, v["uuid"], x["uuid"])
        api.delete(f"/networks/{net['uuid']}")


def test_a_floated_guest_answers_only_on_8080_from_outside(
        netcloud: Cloud, outside_world: OutsideWorld) -> None:
    """Only tcp/8080 from the outside network: 8080 answers at the floating
    address, 22 does not; once the rule is removed, new connections are
    refused and an open one is cut."""
    api = namespace(netcloud)
    net = network(api, "floatnet", "10.92.0.0/24", provide_nat=True)
    web = group(api, "web-outside", {"direction": "egress"},
                {"direction": "ingress", "protocol": "tcp", "ports": "8080",
                 "remote": {"cidrs": [UPSTREAM_NETWORK]}})
    guest = boot(api, "floated", net["uuid"], "10.92.0.5", [web["uuid"]], """
cat > /tmp/tick <<'TICK'
#!/bin/sh
while true; do date +%s; sleep 1; done
TICK
chmod +x /tmp/tick
nc -ll -p 8080 -e /tmp/tick &
nc -ll -p 22 -e /tmp/tick &
""", float=True)
    floating = guest["interfaces"][0]["floating"]
    try:
        try:
            Console(netcloud, guest["uuid"]).wait("SFCLOUD-READY", BOOT)
        except AssertionError as error:
            shown = api.get(f"/instances/{guest['uuid']}").json()
            raise AssertionError(f"{error}\n{shown}\n{netcloud.log_text('agent')[-6000:]}") \
                from None

        def answers(port: int) -> socket.socket | None:
            client = sock(outside_world.www)
            client.settimeout(3)
            try:
                client.connect((floating, port))
                if client.recv(64):
                    return client
            except OSError:
                pass
            client.close()
            return None

        held = wait_for(lambda: answers(8080), 60, "8080 at the floating address")
        assert answers(22) is None
        rule = next(r for r in api.get(f"/security-groups/{web['uuid']}").json()["rules"]
                    if r["direction"] == "ingress")
        assert api.delete(f"/security-groups/{web['uuid']}/rules/{rule['uuid']}").status_code \
            == 200
        applied(api, guest["interfaces"][0]["uuid"])
        assert answers(8080) is None
        held.settimeout(3)
        with pytest.raises(OSError):
            # Ticks already on their way may still arrive; then nothing.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if not held.recv(64):
                    break
        held.close()
    finally:
        delete_instances(netcloud, guest["uuid"])
        api.delete(f"/networks/{net['uuid']}")


def test_a_refused_rule_and_an_agent_killed_mid_apply(netcloud: Cloud) -> None:
    """Case 8: a group etcd holds with a rule no portal would accept keeps
    its applied rules on the hypervisor and its interface says why, until it
    is fixed; an agent killed just before applying a change leaves the old
    tables whole, and applies the change once restarted."""
    api = namespace(netcloud)
    net = network(api, "failnet", "10.93.0.0/24")
    guarded = group(api, "guarded", {"direction": "ingress", "protocol": "tcp",
                                     "ports": "8080"})
    guest = boot(api, "g", net["uuid"], "10.93.0.5", [guarded["uuid"]], "")
    nic = guest["interfaces"][0]["uuid"]
    try:
        applied(api, nic, 120)
        before = filter_tables(netcloud)
        assert allows_port("tcp", 8080, before)
        # Written straight into etcd: a port no portal would accept.
        kv = netcloud.etcd_call(lambda etcd: etcd.get(netcloud.keys.security_group(
            guarded["uuid"])))
        spec = SecurityGroup.from_json(kv.value)
        bad = spec.replace(rules=[r.replace(ports="99999") for r in spec.rules],
                           generation=spec.generation + 1)
        netcloud.etcd_call(lambda etcd: etcd.txn([], [Put(
            netcloud.keys.security_group(bad.uuid), bad.to_json())]))
        shown = wait_for(lambda: (i := api.get(f"/interfaces/{nic}").json())["filtering"]
                         ["state"] == "error" and i, 30, "the interface in error")
        assert "ports" in shown["filtering"]["error"] and shown["state"] == "error"
        assert allows_port("tcp", 8080, filter_tables(netcloud))
        netcloud.etcd_call(lambda etcd: etcd.txn([], [Put(
            netcloud.keys.security_group(bad.uuid),
            spec.replace(generation=spec.generation + 2).to_json())]))
        applied(api, nic)

        # Killed just before applying a change, the tables stay as they were.
        netcloud.stop_agent()
        added = api.post(f"/security-groups/{guarded['uuid']}/rules",
                         {"direction": "ingress", "protocol": "udp", "ports": "5353"})
        assert added.status_code == 200, added.text
        dying = netcloud.start_agent(failpoints="before-filter-apply", wait=False)
        assert dying.wait(timeout=60) == 75, "the agent should have died at the failpoint"
        assert not allows_port("udp", 5353, filter_tables(netcloud))
        assert allows_port("tcp", 8080, filter_tables(netcloud))
        netcloud.start_agent()
        applied(api, nic, 60)
        assert allows_port("udp", 5353, filter_tables(netcloud))
    finally:
        if netcloud.agent is None or netcloud.agent.poll() is not None:
            netcloud.start_agent()
        delete_instances(netcloud, guest["uuid"])
        api.delete(f"/networks/{net['uuid']}")


def test_unknown_ports_on_a_managed_bridge_pass_nothing(netcloud: Cloud) -> None:
    """A port nobody asked for, enslaved to a network's bridge, reaches no
    guest (and no guest reaches it), neither by IP nor by ARP."""
    api = namespace(netcloud)
    net = network(api, "strangers", "10.94.0.0/24")
    open_group = group(api, "open", {"direction": "ingress"}, {"direction": "egress"})
    guest = boot(api, "host", net["uuid"], "10.94.0.5", [open_group["uuid"]],
                 SERVE + probe("stranger", "http://10.94.0.9:8080/"))
    stranger = f"sfx{secrets.token_hex(3)}"
    port = f"{stranger}p"
    subprocess.run(["ip", "netns", "add", stranger], check=True)
    try:
        Console(netcloud, guest["uuid"]).wait("SFCLOUD-READY", BOOT)
        bridge = netcloud.net_names.bridge(net["vxlan_id"])
        subprocess.run(["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0",
                        "netns", stranger], check=True)
        subprocess.run(["ip", "link", "set", port, "master", bridge, "up"], check=True)
        for argv in (["ip", "addr", "add", "10.94.0.9/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"], ["ip", "link", "set", "lo", "up"]):
            in_netns(stranger, *argv, check=True)
        in_netns(stranger, "busybox", "httpd", "-p", "8080", "-h", "/tmp", check=True)
        result = in_netns(stranger, "timeout", "3", "busybox", "wget", "-q", "-O", "-",
                          "http://10.94.0.5:8080/", timeout=20)
        assert result.returncode != 0
        # Not even ARP: the stranger never learned where the guest is.
        assert "lladdr" not in in_netns(stranger, "ip", "neigh", "show", "10.94.0.5").stdout
        Console(netcloud, guest["uuid"]).settled("stranger", "no")
    finally:
        subprocess.run(["ip", "link", "del", port], capture_output=True)
        subprocess.run(["ip", "netns", "del", stranger], capture_output=True)
        delete_instances(netcloud, guest["uuid"])
        api.delete(f"/networks/{net['uuid']}")


def test_hot_plugged_interfaces_take_their_groups(netcloud: Cloud) -> None:
    """A NIC hot-plugged into a running guest is filtered as a created one
    is: the groups given, else the namespace's default, in force before the
    guest sees the NIC. C (egress only) reaches S's plugged NIC in ``web``
    on 8080, and not its other plugged NIC, which is in default."""
    api = namespace(netcloud)
    home = network(api, "plughome", "10.96.0.0/24")
    side = network(api, "plugside", "10.96.1.0/24")
    web = group(api, "web", {"direction": "ingress", "protocol": "tcp", "ports": "8080"})
    client = group(api, "client", {"direction": "egress"})
    server = boot(api, "s", home["uuid"], "10.96.0.5", [], SERVE)
    prober = boot(api, "c", side["uuid"], "10.96.1.5", [client["uuid"]],
                  probe("web", "http://10.96.1.10:8080/")
                  + probe("plain", "http://10.96.1.11:8080/"))
    consoles = {vm["name"]: Console(netcloud, vm["uuid"]) for vm in (server, prober)}
    try:
        consoles["s"].wait("SFCLOUD-READY", BOOT)
        consoles["c"].wait("SFCLOUD-READY", BOOT)
        plugged = []
        for address, groups in (("10.96.1.10", ["web"]), ("10.96.1.11", None)):
            entry = {"network_uuid": side["uuid"], "address": address,
                     **({"security_groups": groups} if groups else {})}
            response = api.post(f"/instances/{server['uuid']}/interfaces", {"network": entry})
            assert response.status_code == 200, response.text
            plugged.append(response.json())
        default = api.get("/security-groups/default").json()["uuid"]
        assert [nic["security_groups"] for nic in plugged] == [[web["uuid"]], [default]]
        for order, nic in enumerate(plugged, start=1):
            consoles["s"].wait(f"SFCLOUD-HOTPLUG: eth{order} {nic['ipv4']}/24", BOOT)
            applied(api, nic["uuid"], 60)
        assert allows_port("tcp", 8080, filter_tables(netcloud))
        consoles["c"].settled("web", "ok", 90)
        consoles["c"].settled("plain", "no")
    finally:
        delete_instances(netcloud, server["uuid"], prober["uuid"])
        for net in (home, side):
            api.delete(f"/networks/{net['uuid']}")
