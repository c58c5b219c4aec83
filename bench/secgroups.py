"""What security groups cost: applying a change, and packets through them.

    python bench/secgroups.py [--runs 7] [--members 1000] [--seconds 2] [--rounds 5]

1. API -> enforcement. On a throwaway cloud with one guest, each run adds a
   rule to the guest's group (POST .../rules) and times until the agent
   reports it in force (the interface's observed record, watched in etcd;
   the agent writes it after its ``nft -f``). Baseline, same run: a plain
   ``nft -f`` of the very ruleset the kernel then holds, into a scratch
   namespace.
2. Many remote-group members vs many rules, on a pseudo-hypervisor
   (network namespaces, the agent's own filter code): a guest lets udp/9999
   in (a) from anywhere, (b) from a remote group of N members (one set of N
   elements), (c) through N rules of one /32 each, the sender matching the
   last. For each: the time to apply the tables, and one-way 64-byte UDP
   packets per second received (one-way UDP never becomes "established",
   so every packet walks the rules).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
import uuid as uuidlib

from support import running_cloud, summary

from cloudstate.config import parse_endpoints
from cloudstate.etcd import Etcd
from cloudstate.model import InterfaceObserved, InterfaceSpec
from nodeagent.net import filterrules, policy
from tests.support.cloud import Cloud, wait_for
from tests.support.fixtures_networks import script
from tests.support.pseudoguests import NODE, PseudoHost, group, rule, sock


def arg(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


# --- 1. API -> enforcement ---------------------------------------------------------------------


async def _applied(cloud: Cloud, interface: str, group: str, generation: int,
                   start: int) -> None:
    etcd = Etcd(parse_endpoints(cloud.env["SFCLOUD_ETCD_ENDPOINTS"]))
    try:
        async for batch in etcd.watch_prefix(cloud.keys.observed_interface(interface), start):
            for event in batch:
                if event.kind == "put" and InterfaceObserved.from_json(
                        event.kv.value).groups.get(group) == generation:
                    return
    finally:
        await etcd.close()


async def _revision(cloud: Cloud) -> int:
    etcd = Etcd(parse_endpoints(cloud.env["SFCLOUD_ETCD_ENDPOINTS"]))
    try:
        return await etcd.revision() + 1
    finally:
        await etcd.close()


def api_to_enforcement(cloud: Cloud, group: str, interface: str, port: int) -> float:
    api = cloud.api()
    api._auth()  # authentication is not part of the figure
    generation = api.get(f"/security-groups/{group}").json()["generation"] + 1
    start = asyncio.run(_revision(cloud))
    started = time.perf_counter()
    response = api.post(f"/security-groups/{group}/rules",
                        {"direction": "ingress", "protocol": "tcp", "ports": str(port)})
    assert response.status_code == 200, response.text
    asyncio.run(_applied(cloud, interface, group, generation, start))
    return time.perf_counter() - started


def plain_nft(cloud: Cloud) -> float:
    """``nft -f`` of the tables the kernel holds now, into a scratch namespace."""
    table = cloud.net_names.filter_table
    text = "".join(subprocess.run(["nft", "list", "table", family, table], capture_output=True,
                                  text=True, check=True).stdout
                   for family in ("bridge", "inet"))
    scratch = f"sfbench{uuidlib.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        started = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", scratch, "nft", "-f", "-"], input=text,
                       text=True, check=True)
        return time.perf_counter() - started
    finally:
        subprocess.run(["ip", "netns", "del", scratch], check=True)


def part_one(runs: int) -> None:
    with running_cloud() as (cloud, _etcd, _image):
        api = cloud.api()
        net = api.post("/networks", {"name": "bench-sg", "netblock": "10.98.0.0/24",
                                     "provide_nat": False}).json()
        wait_for(lambda: api.get(f"/networks/{net['uuid']}").json()["state"] == "created", 60,
                 "the network")
        web = api.post("/security-groups", {"name": "bench-web", "rules": [
            {"direction": "egress"}]}).json()
        vm = api.post("/instances", {
            "name": "bench-sg", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
            "network": [{"network_uuid": net["uuid"], "security_groups": [web["uuid"]]}],
            "user_data": script("true\n")}).json()
        interface = vm["interfaces"][0]["uuid"]
        cloud.wait_console(vm["uuid"], "SFCLOUD-READY")
        ours, theirs = [], []
        try:
            for run in range(runs):
                ours.append(api_to_enforcement(cloud, web["uuid"], interface, 10000 + run))
                theirs.append(plain_nft(cloud))
                print(f"run {run + 1}: API -> in force {ours[-1]:.3f} s; plain nft -f "
                      f"{theirs[-1]:.3f} s", flush=True)
        finally:
            api.delete(f"/instances/{vm['uuid']}")
            wait_for(lambda: api.get(f"/instances/{vm['uuid']}").json()["state"] == "deleted",
                     60, "deleted")
    print()
    print(f"sfcloud  POST rule -> applied on the node:  {summary(ours)}")
    print(f"baseline nft -f of the same tables:         {summary(theirs)}")
    print(f"overhead of medians: {statistics.median(ours) - statistics.median(theirs):.3f} s")


# --- 2. members vs rules -----------------------------------------------------------------------


def flood(host: PseudoHost, sender, receiver, seconds: float) -> float:  # type: ignore[no-untyped-def]
    """One-way UDP packets per second that reached the receiver."""
    listener = sock(receiver.netns, kind=2)
    listener.bind(("0.0.0.0", 9999))
    listener.settimeout(0.5)
    out = sock(sender.netns, kind=2)
    received = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            try:
                listener.recv(64)
                received[0] += 1
            except OSError:
                continue

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    payload = b"x" * 64
    target = (receiver.address, 9999)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(200):
            out.sendto(payload, target)
    time.sleep(0.3)
    stop.set()
    counter.join()
    listener.close()
    out.close()
    return received[0] / seconds


def part_two(members: int, seconds: float, rounds: int) -> None:
    """The three variants on one pseudo-hypervisor, in turn, ``rounds`` times."""
    host = PseudoHost().start()
    try:
        net = host.network("10.96.0.0/16")
        sender_group = host.add_group(group("out", rule("egress")))
        sender = host.guest(net, "10.96.255.254", sender_group)
        receiving = host.add_group(group("in"))
        receiver = host.guest(net, "10.96.255.1", receiving)
        # Members on the network (placed on another node), every other
        # address so none merge into a range: one set of ``members`` elements.
        for index in range(members - 1):
            iface = InterfaceSpec(uuid=str(uuidlib.uuid4()), network_uuid=net.uuid,
                                  instance_uuid="elsewhere", namespace="test", order=0,
                                  macaddr="02:00:00:00:00:01",
                                  ipv4=f"10.96.{index // 120}.{2 * (index % 120) + 3}",
                                  security_groups=[sender_group.uuid])
            host.snap.interfaces[iface.uuid] = iface
        many = [rule("ingress", protocol="udp", ports="9999",
                     remote_cidrs=[f"10.97.{i // 250}.{i % 250 + 2}/32"])
                for i in range(members - 1)]
        variants = {
            "anywhere": [rule("ingress", protocol="udp", ports="9999")],
            f"{members} set elements": [rule("ingress", protocol="udp", ports="9999",
                                             remote_group=sender_group.uuid)],
            f"{members} rules": [*many, rule("ingress", protocol="udp", ports="9999",
                                             remote_cidrs=["10.96.255.254/32"])],
        }
        texts = {}
        for name, rules in variants.items():
            host.add_group(receiving.replace(rules=rules))
            built = policy.build(host.snap, node=NODE, names=host.names, zones=host.zones,
                                 wanted_networks=list(host.snap.networks), network_node=False)
            texts[name] = filterrules.full(filterrules.build(built, host.firewall.names),
                                           host.firewall.table)
        applied: dict[str, list[float]] = {name: [] for name in variants}
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(rounds):
            for name, text in texts.items():
                started = time.perf_counter()
                subprocess.run(["ip", "netns", "exec", host.netns, "nft", "-f", "-"],
                               input=text, text=True, check=True)
                applied[name].append(time.perf_counter() - started)
                rates[name].append(flood(host, sender, receiver, seconds))
                print(f"round {round_ + 1} {name:>18}: nft -f {applied[name][-1]:.3f} s, "
                      f"{rates[name][-1]:,.0f} packets/s", flush=True)
    finally:
        host.close()
    print()
    base = statistics.median(rates["anywhere"])
    for name in variants:
        pps = statistics.median(rates[name])
        print(f"{name:>18}: nft -f median {statistics.median(applied[name]):.3f} s, one-way "
              f"UDP median {pps:>9,.0f} pps ({pps / base:.2f}x of anywhere)")


def main() -> None:
    part_one(arg("--runs", 7))
    print()
    part_two(arg("--members", 1000), arg("--seconds", 2), arg("--rounds", 5))


if __name__ == "__main__":
    main()
