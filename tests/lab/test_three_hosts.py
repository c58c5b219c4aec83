"""Three machines, one cloud: sfcloud-deploy onto a lab of three SSH hosts.

On the lab's cloud (tests/lab/conftest.py), in the order an operator lives
it: a second run changes nothing; six instances with no placement spread
over the three nodes and ping each other across the VXLAN mesh; an upgrade
to this build keeps every guest's qemu; a node lost and back; etcd losing
one member, then its quorum; a fourth host grown and removed, whose
certificate is then refused; a backup restored onto wiped etcd data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cloudstate.config import REPO_ROOT
from tests.lab.cloud import LabCloud, figure, qemu_pids, start_service, stop_service

pytestmark = [pytest.mark.lab, pytest.mark.timeout(3600)]

NETWORK = "10.60.0"
AGENT_PORT = 13001
EVENTS_PORT = 13002
LEASE_TTL = 10  # SFCLOUD_NODE_LEASE_TTL's default: the stated time for "offline"


def wait_for(check, timeout: float, what: str, interval: float = 0.5):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def members(cloud: LabCloud) -> list[list[str]]:
    out = cloud.etcdctl("member", "list", "-w", "simple").stdout
    return [[field.strip() for field in line.split(",")] for line in out.splitlines() if line]


def nodes(cloud: LabCloud) -> dict[str, dict]:
    return {node["name"]: node for node in cloud.sf_json("node", "list")}


def instances(cloud: LabCloud) -> dict[str, dict]:
    return {i["name"]: i for i in cloud.sf_json("instance", "list")["instances"]}


def network_list(cloud: LabCloud) -> list[dict]:
    listed = cloud.sf_json("network", "list")
    return listed["networks"] if isinstance(listed, dict) else listed


# --- deploy --------------------------------------------------------------------------------


def test_three_hosts_with_a_three_member_tls_etcd_and_a_second_run_changes_nothing(
        cloud: LabCloud) -> None:
    listed = members(cloud)
    assert sorted(m[2] for m in listed) == ["h1", "h2", "h3"]
    assert all(m[1] == "started" and m[5] == "false" for m in listed), listed  # no learner
    assert all(m[3].startswith("https://") and m[4].startswith("https://") for m in listed)
    endpoints = [f"https://{h.address}:2379" for h in cloud.lab.hosts.values()]
    health = cloud.etcdctl("endpoint", "health", endpoints=endpoints)
    said = health.stdout + health.stderr
    assert said.count("is healthy") == 3, said
    assert {n: v["state"] for n, v in nodes(cloud).items()} == {
        "h1": "created", "h2": "created", "h3": "created"}

    again = cloud.deploy(["apply"])
    assert "nothing changed" in again.stdout, again.stdout
    figure("second run (s)", cloud.timings["apply"])


# --- placement and the mesh ------------------------------------------------------------------


def test_six_instances_spread_over_the_three_nodes_and_ping_across_the_mesh(
        cloud: LabCloud, tmp_path: Path) -> None:
    cloud.sf("network", "create", "labnet", f"{NETWORK}.0/24", "--no-nat")
    addresses = [f"{NETWORK}.{20 + index}" for index in range(6)]
    script = tmp_path / "ping.sh"
    script.write_text("#!/bin/sh\nfor a in " + " ".join(addresses) + "; do\n"
                      "  for i in $(seq 120); do ping -c1 -W1 $a >/dev/null 2>&1 && "
                      "echo \"PING-OK $a\" && break; sleep 1; done\n"
                      "done\necho PING-DONE\n")
    script.chmod(0o644)
    started = time.monotonic()
    for index, address in enumerate(addresses):
        cloud.sf("instance", "create", f"spread-{index}", "1", "128", "-d", "1@demo",
                 "-n", f"labnet@{address}", "-u", str(script))
    placed = {name: i["node"] for name, i in instances(cloud).items()}
    figure("placements", placed)
    assert Counter(placed.values()) == {"h1": 2, "h2": 2, "h3": 2}

    wait_for(lambda: all(i["power_state"] == "on" for i in instances(cloud).values()),
             300, "six guests on")
    figure("six guests on (s)", round(time.monotonic() - started, 1))
    by_address = {a: placed[f"spread-{i}"] for i, a in enumerate(addresses)}
    listed = instances(cloud)
    on_h2 = [i for i in listed.values() if i["node"] == "h2"]
    h3_addresses = [a for a, node in by_address.items() if node == "h3"]

    def pinged() -> bool:
        return all("PING-DONE" in cloud.console_log("h2", i["uuid"]) for i in on_h2)

    wait_for(pinged, 600, "the guests on h2 to have pinged every other", interval=5)
    figure("pings done (s)", round(time.monotonic() - started, 1))
    for guest in on_h2:
        log = cloud.console_log("h2", guest["uuid"])
        for address in h3_addresses:
            assert f"PING-OK {address}" in log, log[-3000:]


# --- upgrade -------------------------------------------------------------------------------


def test_upgrade_to_this_build_keeps_every_guest_and_object(cloud: LabCloud) -> None:
    before = {name: qemu_pids(host) for name, host in cloud.lab.hosts.items()}
    objects = {i["uuid"]: i["node"] for i in instances(cloud).values()}
    networks = {n["uuid"] for n in network_list(cloud)}
    old_release = {n: v["release"] for n, v in nodes(cloud).items()}
    assert sum(len(p) for p in before.values()) == 6

    upgraded = cloud.deploy(["upgrade", "--source", str(REPO_ROOT)])
    figure("upgrade (s)", cloud.timings["upgrade --source"])
    print(upgraded.stdout[-3000:])
    new_release = {n: v["release"] for n, v in nodes(cloud).items()}
    assert all(new_release[n] != old_release[n] for n in new_release), new_release
    assert len(set(new_release.values())) == 1
    assert {name: qemu_pids(host) for name, host in cloud.lab.hosts.items()} == before
    assert {i["uuid"]: i["node"] for i in instances(cloud).values()} == objects
    assert {n["uuid"] for n in network_list(cloud)} == networks
    wait_for(lambda: all(i["power_state"] == "on" for i in instances(cloud).values()),
             60, "every guest shown on")


# --- a node lost, and back ---------------------------------------------------------------------


def test_a_lost_node_shows_offline_its_guests_unreachable_and_comes_back(
        cloud: LabCloud) -> None:
    h2 = cloud.lab.hosts["h2"]
    guests = qemu_pids(h2)
    assert guests
    lost = time.monotonic()
    stop_service(h2, "sfcloud-nodeagent", kill=True)
    cloud.lab.disconnect("h2")
    try:
        wait_for(lambda: nodes(cloud)["h2"]["state"] == "offline", LEASE_TTL + 10,
                 "h2 offline")
        figure("h2 shown offline after (s)", round(time.monotonic() - lost, 1))
        listed = instances(cloud)
        assert {i["power_state"] for i in listed.values() if i["node"] == "h2"} == \
            {"unreachable"}
        assert "offline" in cloud.sf("node", "list").stdout
        made = cloud.sf_json("instance", "create", "while-h2-away", "1", "128", "-d", "1@demo")
        assert made["node"] in ("h1", "h3")
        cloud.sf("instance", "delete", made["uuid"])
    finally:
        cloud.lab.reconnect("h2")
    back = time.monotonic()
    start_service(h2, "sfcloud-nodeagent")
    wait_for(lambda: nodes(cloud)["h2"]["state"] == "created", 120, "h2 online")
    wait_for(lambda: {i["power_state"] for i in instances(cloud).values()
                      if i["node"] == "h2"} == {"on"}, 120, "h2's guests on again")
    figure("h2 back online with its guests (s)", round(time.monotonic() - back, 1))
    assert qemu_pids(h2) == guests  # adopted, not restarted


# --- etcd's quorum ------------------------------------------------------------------------------


def test_one_etcd_member_down_works_two_down_refuses_writes_with_a_503(
        cloud: LabCloud) -> None:
    guest = instances(cloud)["spread-0"]["uuid"]
    h2, h3 = cloud.lab.hosts["h2"], cloud.lab.hosts["h3"]
    stop_service(h3, "sfcloud-etcd")
    try:
        started = time.monotonic()
        cloud.sf("instance", "set-metadata", guest, "quorum", "two-of-three")
        figure("write with 2 of 3 etcd members (s)", round(time.monotonic() - started, 2))
        stop_service(h2, "sfcloud-etcd")
        try:
            started = time.monotonic()
            refused = cloud.sf("instance", "set-metadata", guest, "quorum", "one", check=False)
            figure("refusal without quorum (s)", round(time.monotonic() - started, 1))
            said = refused.stdout + refused.stderr
            assert refused.returncode != 0
            assert "503" in said or "unavailable" in said.lower(), said
            print(said[-600:])
        finally:
            start_service(h2, "sfcloud-etcd")
        wait_for(lambda: cloud.sf("instance", "set-metadata", guest, "quorum", "back",
                                  check=False).returncode == 0, 60, "writes back")
    finally:
        start_service(h3, "sfcloud-etcd")
    endpoints = [f"https://{h.address}:2379" for h in cloud.lab.hosts.values()]

    def healthy() -> int:
        said = cloud.etcdctl("endpoint", "health", endpoints=endpoints, check=False)
        return (said.stdout + said.stderr).count("is healthy")

    wait_for(lambda: healthy() == 3, 60, "3 of 3 healthy")
    # Every agent lived through it (none gave up on its lease while etcd had
    # no quorum): all nodes online without anyone restarting them.
    wait_for(lambda: {v["state"] for v in nodes(cloud).values()} == {"created"}, 60,
             "every node online after etcd's quorum came back")


# --- grow, shrink, and what a removed node may still do -----------------------------------------


def _https(cloud: LabCloud, where: str, url: str, cert: str | None) -> int:
    """curl's exit code for ``url`` from the host ``where`` (or the operator's
    machine) with a client certificate of the cloud's CA (or none)."""
    pki = cloud.deploy_dir / "pki"
    argv = ["curl", "-s", "-o", "/dev/null", "--max-time", "5", "--cacert",
            str(pki / "ca.crt")]
    if cert is not None:
        argv += ["--cert", f"{cert}.crt", "--key", f"{cert}.key"]
    argv.append(url)
    if where == "operator":
        return subprocess.run(cloud.lab.operator_argv(*argv), capture_output=True,
                              timeout=30).returncode
    return cloud.lab.hosts[where].run(*argv, check=False).returncode


def join_with_a_token(cloud: LabCloud, name: str) -> tuple[str, str]:
    """``name`` joins as an operator would have it: a token from the portal's
    API (as the Nodes page makes it), ``sfcloud-deploy join`` on the new
    machine with the command the portal printed, ``accept-joins`` on the
    deploy machine. The deploy's known_hosts forgets the machine first: its
    host key must come through the join. Answers both sides' output."""
    host = cloud.lab.hosts[name]
    known = cloud.lab.known_hosts
    known.write_text("".join(line for line in known.read_text().splitlines(keepends=True)
                             if not line.startswith(f"{host.address} ")))
    made = cloud.api("POST", "/join-tokens", {"etcd": True})
    command = made["command"].split()
    assert command[:2] == ["sfcloud-deploy", "join"] and made["ca_sha256"] in command
    # The machine is bare (no sfcloud on it): the command for such a machine
    # fetches the join script, checks it and runs it with the system's Python.
    bare = (f"cd $(mktemp -d) && {made['bootstrap']} --host-key "
            f"{cloud.lab.directory / name / 'ssh_host_ed25519_key.pub'}")
    accepting = subprocess.Popen(
        cloud.lab.operator_argv(sys.executable, "-m", "deploy.cli", "--dir",
                                str(cloud.deploy_dir), "accept-joins", "--once",
                                "--timeout", "900"),
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        started = time.monotonic()
        joined = host.run("sh", "-c", bare, timeout=900, check=False)
        figure(f"join {name} with a token, etcd member (s)",
               round(time.monotonic() - started, 1))
        accepted, _ = accepting.communicate(timeout=120)
    finally:
        if accepting.poll() is None:
            accepting.kill()
            accepting.wait(10)
    said = joined.stdout + joined.stderr
    assert joined.returncode == 0, f"{said[-3000:]}\n{accepted[-3000:]}"
    assert accepting.returncode == 0, accepted[-3000:]
    assert f"{name} is a node of the cloud" in said, said
    # The machine took the deploy's key for root; the deploy took the machine's host key.
    deploy_key = Path(f"{cloud.lab.key}.pub").read_text().split()[1]
    assert deploy_key in host.run("cat", "/root/.ssh/authorized_keys").stdout
    host_key = (cloud.lab.directory / name / "ssh_host_ed25519_key.pub").read_text().split()
    assert f"{host.address} {host_key[0]} {host_key[1]}" in known.read_text()
    token = next(t for t in cloud.api("GET", "/join-tokens") if t["id"] == made["id"])
    assert (token["state"], token["join_state"], token["node"]) == ("used", "joined", name)
    # Used once: the same command again is refused, and changes nothing.
    again = host.run("sh", "-c", bare + " --wait 5", check=False)
    assert again.returncode != 0 and "refused (403)" in again.stderr, again.stderr
    return said, accepted


def test_grow_to_four_with_a_join_token_as_a_learner_then_remove_it_and_its_certificate_is_refused(
        cloud: LabCloud, tmp_path: Path) -> None:
    cloud.lab.add_host("h4")
    _, accepted = join_with_a_token(cloud, "h4")
    assert "h4 joins etcd as a learner" in accepted
    assert "h4 is a voting etcd member" in accepted
    assert sorted(m[2] for m in members(cloud)) == ["h1", "h2", "h3", "h4"]
    assert all(m[5] == "false" for m in members(cloud))
    assert nodes(cloud)["h4"]["state"] == "created"

    # Its certificates, kept as someone who took the machine away would.
    kept = tmp_path / "h4"
    kept.mkdir()
    for name in ("etcd-h4", "agent-h4"):
        for suffix in (".crt", ".key"):
            shutil.copy(cloud.deploy_dir / "pki" / f"{name}{suffix}", kept / f"{name}{suffix}")
    etcd_url = f"https://{cloud.lab.hosts['h1'].address}:2379/version"
    agent_url = f"https://{cloud.lab.hosts['h1'].address}:{AGENT_PORT}/"
    events_url = f"https://{cloud.lab.hosts['h1'].address}:{EVENTS_PORT}/"
    # While h4 is a member, its certificate is let in (the check below can fail).
    assert _https(cloud, "operator", etcd_url, str(kept / "etcd-h4")) == 0

    removed = cloud.deploy(["remove-node", "h4"])
    figure("remove-node h4 (s)", cloud.timings["remove-node h4"])
    assert "h4 left etcd" in removed.stdout and "revoked" in removed.stdout
    assert sorted(m[2] for m in members(cloud)) == ["h1", "h2", "h3"]
    assert "h4" not in nodes(cloud)
    assert "h4" not in cloud.config()["nodes"]

    # From the mesh (the operator's namespace): no certificate, or h4's
    # revoked one, and etcd, the agent's server and the event socket refuse.
    for url in (etcd_url, agent_url, events_url):
        assert _https(cloud, "operator", url, None) != 0, url
    assert _https(cloud, "operator", etcd_url, str(kept / "etcd-h4")) != 0
    assert _https(cloud, "operator", agent_url, str(kept / "agent-h4")) != 0
    assert _https(cloud, "operator", events_url, str(kept / "agent-h4")) != 0


def test_remove_node_refuses_to_break_quorum_or_drop_instances(cloud: LabCloud) -> None:
    holding = cloud.deploy(["remove-node", "h3"], check=False)
    assert holding.returncode != 0
    assert "still holds 2 instances" in holding.stderr, holding.stderr


# --- backup and restore --------------------------------------------------------------------------


def _durable_keys(cloud: LabCloud) -> set[str]:
    """Every key in etcd but those on a lease (liveness, consoles), which
    their holders write again."""
    listed = cloud.etcdctl("get", "--prefix", "/sfcloud/", "--keys-only").stdout.split()
    return {k for k in listed if not k.startswith(("/sfcloud/alive/", "/sfcloud/consoles/",
                                                   "/sfcloud/spent/"))}


def test_backup_wipe_every_member_restore_same_keys_same_guests(cloud: LabCloud) -> None:
    made = cloud.deploy(["backup"])
    figure("backup (s)", cloud.timings["backup"])
    name = made.stdout.split("backup ", 1)[1].split()[0]
    keys = _durable_keys(cloud)
    guests = {n: qemu_pids(h) for n, h in cloud.lab.hosts.items() if n != "h4"}
    for host in ("h1", "h2", "h3"):
        stop_service(cloud.lab.hosts[host], "sfcloud-etcd")
        cloud.lab.hosts[host].run("rm", "-rf", "/var/lib/sfcloud/etcd")
    restored = cloud.deploy(["restore", name])
    figure("restore (s)", cloud.timings["restore " + name])
    print(restored.stdout[-2000:])
    assert _durable_keys(cloud) == keys
    assert {n: qemu_pids(h) for n, h in cloud.lab.hosts.items() if n != "h4"} == guests
    listed = instances(cloud)
    assert len(listed) == 6
    assert all(i["power_state"] == "on" for i in listed.values()), listed
