"""Races at the API: many requests for what only one may have, sent at the
same moment, to the portal in process over the real etcd (their
transactions really interleave). Each round counts winners and losers,
asserts the rule (exactly one winner, never overcommitted), and runs the
invariant checker over etcd afterwards. Rounds: SFCLOUD_STRESS_ROUNDS
(3 in `make test`, 20 under `make soak`); the counts are printed as EVIDENCE lines.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter

import pytest
from django.conf import settings

from cloudstate.audit import Limits
from cloudstate.settings import read
from tests.support.evidence import record
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal, Reply
from tests.support.invariants import portal_drift
from tests.support.objects import PUBLIC_KEY
from tests.support.racing import raced_transactions

pytestmark = pytest.mark.stress
RACERS = 20
ROUNDS = read("SFCLOUD_STRESS_ROUNDS")


def tally(replies: list[Reply]) -> Counter[int]:
    """Answers by status; a server error fails (507, "no room", is Shaken
    Fist's answer to a full node, not an error of ours)."""
    counted = Counter(reply.status_code for reply in replies)
    failed = [r.text for r in replies if r.status_code >= 500 and r.status_code != 507]
    assert not failed, failed
    return counted


def assert_no_drift(portal: InProcessPortal) -> None:
    drift = portal_drift(portal)
    assert drift == [], "\n".join(map(str, drift))


def instance_body(name: str, **extra: object) -> dict:
    return {"name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1}], **extra}


# --- names that must be unique -------------------------------------------------------------

UNIQUE_NAMES = {
    "network": ("/networks", lambda name: {"name": name, "netblock": "10.50.0.0/24",
                                           "provide_nat": False}),
    "keypair": ("/keypairs", lambda name: {"name": name, "public_key": PUBLIC_KEY}),
    "namespace": ("/auth/namespaces", lambda name: {"namespace": name}),
}


@pytest.mark.parametrize("kind", sorted(UNIQUE_NAMES))
def test_one_name_many_creates_exactly_one_wins(portal: InProcessPortal, agent: FakeAgent,
                                                kind: str) -> None:
    path, body = UNIQUE_NAMES[kind]
    api = portal.api()
    totals: Counter[int] = Counter()
    with raced_transactions(portal) as txns:
        for _ in range(ROUNDS):
            name = f"twin-{secrets.token_hex(3)}"
            counted = tally(api.concurrently([("POST", path, body(name))] * RACERS))
            assert counted == {200: 1, 409: RACERS - 1}, counted
            totals += counted
            assert_no_drift(portal)
    listed = api.get(path).json()
    record("races", scenario=f"one {kind} name", racers=RACERS, rounds=ROUNDS,
           winners=totals[200], losers=totals[409], listed=len(listed),
           transactions_lost_to_the_race=txns["lost"])
    # Namespaces are rows of the portal's database, kept unique there.
    assert kind == "namespace" or txns["lost"] > 0, "the requests did not interleave"


# --- one instance name, which need not be unique -----------------------------------------------


def test_one_instance_name_many_creates(portal: InProcessPortal, agent: FakeAgent) -> None:
    """Instance names need not be unique, as in Shaken Fist: every create
    that gets a place is its own instance under the same name. All of them
    race for the one node's placement key, so each wave of transactions has
    one winner and the rest go round again; one out of attempts is told to
    try again (409), never a 5xx, never two instances on one UUID."""
    api = portal.api()
    totals: Counter[int] = Counter()
    with raced_transactions(portal) as txns:
        for _ in range(ROUNDS):
            name = f"twin-{secrets.token_hex(3)}"
            replies = api.concurrently([("POST", "/instances", instance_body(name))] * RACERS)
            counted = tally(replies)
            assert set(counted) <= {200, 409} and counted[200] >= 1, counted
            made = [r.json()["uuid"] for r in replies if r.status_code == 200]
            assert len(set(made)) == len(made)
            assert all("try again" in r.json()["error"] for r in replies
                       if r.status_code == 409)
            named = [i["uuid"] for i in api.get("/instances").json() if i["name"] == name]
            assert sorted(named) == sorted(made)
            if len(made) > 1:  # a name several hold is no reference
                assert api.get(f"/instances/{name}").status_code == 400
            totals += counted
            assert_no_drift(portal)
            for uuid in made:
                assert api.delete(f"/instances/{uuid}").status_code == 200
                agent.tear_down_instance(uuid)
    record("races", scenario="one instance name (duplicates allowed)", racers=RACERS,
           rounds=ROUNDS, created=totals[200], told_to_retry_409=totals[409],
           transactions_lost_to_the_race=txns["lost"])
    assert txns["lost"] > 0, "the requests did not interleave"


# --- one fixed address -----------------------------------------------------------------------


def test_one_fixed_address_many_creates_exactly_one_wins(portal: InProcessPortal,
                                                         agent: FakeAgent) -> None:
    api = portal.api()
    network = api.post("/networks", {"name": "fixed", "netblock": "10.51.0.0/24",
                                     "provide_nat": False}).json()
    agent.report_network(network["uuid"])
    totals: Counter[int] = Counter()
    with raced_transactions(portal) as txns:
        for round_ in range(ROUNDS):
            address = f"10.51.0.{20 + round_}"
            calls = [("POST", "/instances", instance_body(
                f"fixed-{round_}-{n}", network=[{"network_uuid": network["uuid"],
                                                  "address": address}]))
                     for n in range(RACERS)]
            counted = tally(api.concurrently(calls))
            assert counted == {200: 1, 409: RACERS - 1}, counted
            totals += counted
            holders = [i for i in api.get(f"/networks/{network['uuid']}/interfaces").json()
                       if i["ipv4"] == address]
            assert len(holders) == 1, holders
            assert_no_drift(portal)
    record("races", scenario="one fixed address", racers=RACERS, rounds=ROUNDS,
           winners=totals[200], losers=totals[409],
           transactions_lost_to_the_race=txns["lost"])
    assert txns["lost"] > 0, "no transaction lost a race: the requests did not interleave"


# --- the last free memory of a node ------------------------------------------------------------


def test_the_last_free_memory_is_never_overcommitted(portal: InProcessPortal) -> None:
    """A node with room for exactly FITS guests; RACERS ask at once."""
    fits = 5
    # Memory such that the scheduler's limit (after its reserve and
    # overcommit, from settings) holds FITS guests of 128 MiB and no more.
    memory = settings.SCHEDULER_RAM_RESERVED_MIB + math.ceil(
        fits * 128 / settings.SCHEDULER_RAM_OVERCOMMIT)
    limit = Limits(ram_overcommit=settings.SCHEDULER_RAM_OVERCOMMIT,
                   ram_reserved_mib=settings.SCHEDULER_RAM_RESERVED_MIB)
    api = portal.api()
    totals: Counter[int] = Counter()
    with raced_transactions(portal) as txns:
        for round_ in range(ROUNDS):
            node = FakeAgent(portal, node=f"tight-{round_}").register(vcpus=64, memory_mib=memory)
            assert fits * 128 <= limit.memory_mib(node.info()) < (fits + 1) * 128
            calls = [("POST", "/instances",
                      instance_body(f"fill-{round_}-{n}", placed_on=node.node))
                     for n in range(RACERS)]
            replies = api.concurrently(calls)
            counted = tally(replies)
            placed = [r.json()["uuid"] for r in replies if r.status_code == 200]
            assert counted[200] == fits, counted
            # The rest hear there is no room (507), or, if others kept winning the
            # placement race, to try again (409).
            assert set(counted) <= {200, 507, 409}, counted
            totals += counted
            assert_no_drift(portal)  # includes: no node carries more than its limit
            for uuid in placed:  # make room for the next round's node
                assert api.delete(f"/instances/{uuid}").status_code == 200
                node.tear_down_instance(uuid)
            assert_no_drift(portal)
    record("races", scenario="last free memory", racers=RACERS, rounds=ROUNDS, fits=fits,
           placed=totals[200], no_room_507=totals[507], retry_409=totals[409],
           placements_lost_to_the_race=txns["lost"])
    assert txns["lost"] > 0, "no placement lost a race: the retry path did not run"


# --- delete racing power actions on one instance ----------------------------------------------


def test_delete_and_power_actions_at_once(portal: InProcessPortal, agent: FakeAgent) -> None:
    api = portal.api()
    outcomes: Counter[str] = Counter()
    for round_ in range(ROUNDS):
        uuid = api.post("/instances", instance_body(f"contested-{round_}")).json()["uuid"]
        agent.report_instance(uuid, state="created", power_state="on")
        calls = [("DELETE", f"/instances/{uuid}", None)]
        calls += [("POST", f"/instances/{uuid}/{verb}", None)
                  for verb in ("poweroff", "pause", "rebootsoft", "reboothard", "poweron")] * 3
        with raced_transactions(portal):
            replies = api.concurrently(calls)
        tally(replies)
        assert replies[0].status_code == 200, replies[0].text
        for call, reply in zip(calls[1:], replies[1:], strict=True):
            # Applied (200), refused as it is going (409), or told to retry
            # while a previous action is applied (406): never anything else.
            assert reply.status_code in (200, 406, 409), (call, reply.text)
            outcomes[f"{call[1].rsplit('/', 1)[-1]} {reply.status_code}"] += 1
        shown = api.get(f"/instances/{uuid}").json()
        assert shown["state"] == "deleting", shown
        agent.tear_down_instance(uuid)
        assert api.get(f"/instances/{uuid}").json()["state"] == "deleted"
        late = api.post(f"/instances/{uuid}/poweron")
        assert late.status_code == 409, late.text
        assert_no_drift(portal)
    record("races", scenario="delete + power actions", rounds=ROUNDS,
           outcomes=dict(sorted(outcomes.items())))


# --- two deletes of one network ---------------------------------------------------------------


def test_two_concurrent_network_deletes(portal: InProcessPortal, agent: FakeAgent) -> None:
    api = portal.api()
    asked = Counter[str]()
    for round_ in range(ROUNDS):
        uuid = api.post("/networks", {"name": f"doomed-{round_}", "netblock": "10.52.0.0/24",
                                      "provide_nat": False}).json()["uuid"]
        agent.report_network(uuid)
        with raced_transactions(portal) as txns:
            replies = api.concurrently([("DELETE", f"/networks/{uuid}", None)] * 2)
        asked["transactions lost to the race"] += txns["lost"]
        counted = tally(replies)
        # Deleting what is being deleted is not an error (Shaken Fist's rule).
        assert counted == {200: 2}, counted
        events = [e for e in api.get(f"/networks/{uuid}/events").json()
                  if "deletion asked" in e.get("message", "")]
        assert len(events) == 1, events  # one of the two did it
        asked["deletion events"] += len(events)
        agent.tear_down_network(uuid)
        assert api.get(f"/networks/{uuid}").json()["state"] == "deleted"
        # Its name is free again, its range too.
        again = api.post("/networks", {"name": f"doomed-{round_}", "netblock": "10.52.0.0/24",
                                       "provide_nat": False})
        assert again.status_code == 200, again.text
        agent.report_network(again.json()["uuid"])
        assert_no_drift(portal)
    record("races", scenario="two network deletes", rounds=ROUNDS, **asked)
