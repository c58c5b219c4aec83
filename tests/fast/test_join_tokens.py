"""Joining the cloud with a token, on the in-process portal: a system admin
makes one (API and Nodes page), sees the one command with the CA's pin, lists
and revokes tokens; nobody else may. A machine redeems a token once over the
join listener (TLS pinned to the CA, deploy.joinclient), whoever races it;
expired, used, revoked and forged tokens are refused with nothing changed;
the deploy machine's acceptor (deploy.joins) adds the machine and the
machine hears it joined. Every step is in the audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from cloudstate import jointokens as tokenrules
from cloudstate import tls
from cloudstate.etcd import Etcd, Put
from cloudstate.jointokens import JoinToken
from deploy import cloudconfig, joinclient, joins
from deploy.cloudconfig import CloudConfig, NodeConfig, SshConfig
from deploy.deploydir import DeployDir
from deploy.operations import Context, DeployError
from portal.accounts.models import AuditEvent
from portal.cloud import jointokens
from portal.cloud.errors import Conflict, Forbidden
from portal.nodes import joinlistener
from tests.support.inprocess import InProcessPortal, Person

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPmZtLxQ4vQ0vUvVJv9Xc0k7l6mE2d7uC2cJbq1mYw7b"
DEPLOY_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeployDeployDeployDeployDeployDeployDeploy "
              "deploy@h1")
MACHINE = {"name": "h4", "address": "10.0.0.14", "host_key": HOST_KEY}


def _ca_pin() -> str:
    der = ssl.PEM_cert_to_DER_cert((settings.CLOUD.pki_dir / "ca.crt").read_text())
    return hashlib.sha256(der).hexdigest()


def _etcd_state(portal: InProcessPortal) -> dict[str, bytes]:
    kvs, _ = portal.etcd_call(lambda etcd: etcd.get_prefix(portal.keys.root))
    return {kv.key: kv.value for kv in kvs}


def _publish_deploy_key(portal: InProcessPortal) -> None:
    async def put(etcd: Etcd) -> None:
        await etcd.put(portal.keys.deploy_ssh_key, DEPLOY_KEY.encode())

    portal.etcd_call(put)


def _made(portal: InProcessPortal, **body: Any) -> dict:
    answer = portal.api().post("/join-tokens", body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _actions(token_id: str, node: str = "h4") -> list[str]:
    return sorted(row.action for row in AuditEvent.objects.filter(object_id__in=[token_id, node]))


# --- making, listing, revoking ------------------------------------------------------------------


def test_an_admin_gets_a_token_and_the_command_with_the_cas_pin_once(
        portal: InProcessPortal) -> None:
    made = _made(portal, etcd=True)
    token_id, secret = tokenrules.parse(made["token"])
    assert made["id"] == token_id and made["state"] == "unused" and made["etcd"] is True
    assert made["ca_sha256"] == _ca_pin()
    assert made["command"] == (f"sfcloud-deploy join https://{settings.PORTAL_JOIN_ADDRESS} "
                               f"--token {made['token']} --ca-sha256 {_ca_pin()}")
    script_sha = hashlib.sha256(jointokens.JOIN_SCRIPT.read_bytes()).hexdigest()
    url = f"https://{settings.PORTAL_JOIN_ADDRESS}"
    assert made["bootstrap"] == (
        f"curl -fsSko sfcloud-join.py {url}/join/sfcloud-join.py && "
        f"echo '{script_sha}  sfcloud-join.py' | sha256sum -c --quiet && "
        f"python3 sfcloud-join.py {url} --token {made['token']} --ca-sha256 {_ca_pin()}")
    assert abs(made["expires"] - made["created"] - settings.JOIN_TOKEN_TTL) < 1
    listed = portal.api().get("/join-tokens")
    assert [t["id"] for t in listed.json()] == [token_id]
    assert secret not in listed.text and "token" not in listed.json()[0]
    # Nowhere in etcd either: only its hash.
    assert not any(secret.encode() in value for value in _etcd_state(portal).values())
    assert _actions(token_id) == ["create"]


def test_a_revoked_token_lets_nobody_in_and_is_revoked_once(portal: InProcessPortal) -> None:
    _publish_deploy_key(portal)
    made = _made(portal, ttl=120)
    assert made["expires"] - made["created"] == pytest.approx(120, abs=1)
    api = portal.api()
    revoked = api.delete(f"/join-tokens/{made['id']}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    again = api.delete(f"/join-tokens/{made['id']}")
    assert again.status_code == 409 and "revoked already" in again.json()["error"]
    assert api.delete("/join-tokens/0123456789ab").status_code == 404
    assert api.delete("/join-tokens/not-an-id").status_code == 404
    before = _etcd_state(portal)
    with pytest.raises(Forbidden):
        portal.loop.run(jointokens.redeem(made["token"], MACHINE, peer="10.0.0.14"))
    assert _etcd_state(portal) == before
    assert _actions(made["id"]) == ["create", "revoke", "revoke"]  # the refused one too


@pytest.mark.parametrize("body, field", [({"etcd": "yes"}, "etcd"), ({"ttl": 5}, "ttl"),
                                         ({"ttl": True}, "ttl"), ({"ttl": 10**9}, "ttl")])
def test_a_bad_request_for_a_token_is_a_400_naming_its_field(
        portal: InProcessPortal, body: dict, field: str) -> None:
    before = _etcd_state(portal)
    refused = portal.api().post("/join-tokens", body)
    assert refused.status_code == 400 and refused.json()["error"].startswith(f"{field}:")
    assert _etcd_state(portal) == before


def test_only_the_system_namespaces_admins_see_or_make_tokens(
        portal: InProcessPortal, alice: Person) -> None:
    operator = portal.person("sysop", {"system": "member"})
    made = _made(portal)
    for person in (alice, operator):
        api = person.api()
        assert api.get("/join-tokens").status_code == 403
        assert api.post("/join-tokens", {}).status_code == 403
        assert api.delete(f"/join-tokens/{made['id']}").status_code == 403
    assert len(portal.api().get("/join-tokens").json()) == 1


def test_the_nodes_page_shows_an_admin_the_command_and_puts_errors_beside_fields(
        portal: InProcessPortal, admin: Person) -> None:
    browser = admin.browser
    page = browser.get("/nodes/")
    assert page.status_code == 200 and "Make a join token" in page.text
    bad = browser.post("/nodes/-/join-tokens/", {"valid_minutes": "0"})
    assert bad.status_code == 400
    # Beside its field (Django ties the error list to the control by this id).
    assert re.search(r'id="id_valid_minutes_error"[^>]*>\s*<li>[^<]*greater than or equal to 1',
                     bad.text), bad.text[-3000:]
    assert "sfcloud-deploy join https://" not in bad.text
    assert browser.post("/nodes/-/join-tokens/", {"valid_minutes": "10081"}).status_code == 400
    made = browser.post("/nodes/-/join-tokens/", {"etcd": "on", "valid_minutes": "30"})
    assert made.status_code == 200
    assert "sfcloud-deploy join https://" in made.text and f"--ca-sha256 {_ca_pin()}" in made.text
    listed = portal.api().get("/join-tokens").json()
    assert len(listed) == 1 and listed[0]["etcd"] is True
    assert listed[0]["expires"] - listed[0]["created"] == pytest.approx(1800, abs=1)
    # Shown once: the next look at the page lists it without its secret.
    assert "sfcloud-deploy join https://" not in browser.get("/nodes/").text
    revoked = browser.post(f"/nodes/-/join-tokens/{listed[0]['id']}/revoke/")
    assert revoked.status_code == 302
    assert portal.api().get("/join-tokens").json()[0]["state"] == "revoked"


def test_the_nodes_page_offers_no_tokens_to_a_system_member_and_refuses_their_post(
        portal: InProcessPortal) -> None:
    operator = portal.person("sysop", {"system": "member"})
    page = operator.browser.get("/nodes/")
    assert page.status_code == 200 and "Make a join token" not in page.text
    assert operator.browser.post("/nodes/-/join-tokens/", {}).status_code == 403
    assert portal.api().get("/join-tokens").json() == []


# --- redeeming ------------------------------------------------------------------------------


def test_a_token_lets_exactly_one_of_two_racing_machines_in(portal: InProcessPortal) -> None:
    _publish_deploy_key(portal)
    made = _made(portal, etcd=True)

    async def race() -> list[Any]:
        return await asyncio.gather(
            jointokens.redeem(made["token"], MACHINE, peer="10.0.0.14"),
            jointokens.redeem(made["token"], {**MACHINE, "name": "h5", "address": "10.0.0.15"},
                              peer="10.0.0.15"),
            return_exceptions=True)

    outcomes = portal.loop.run(race())
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Forbidden), outcomes
    record, key = won[0]
    assert key == DEPLOY_KEY and record.state == "used" and record.join_state == "pending"
    listed = portal.api().get("/join-tokens").json()
    assert listed[0]["node"] == record.node and listed[0]["state"] == "used"
    assert "join" in _actions(made["id"], record.node)


def test_expired_forged_and_unknown_tokens_are_refused_with_nothing_changed(
        portal: InProcessPortal) -> None:
    _publish_deploy_key(portal)
    made = _made(portal)
    token_id, secret = tokenrules.parse(made["token"])
    forged = f"{token_id}.{'A' * 43}"
    unknown = f"{'0' * 12}.{secret}"
    before = _etcd_state(portal)
    for token in (forged, unknown):
        with pytest.raises(Forbidden):
            portal.loop.run(jointokens.redeem(token, MACHINE, peer=None))
    with pytest.raises(Exception) as bad:  # not even a token: a 400 naming it
        portal.loop.run(jointokens.redeem("nonsense", MACHINE, peer=None))
    assert str(bad.value).startswith("token:")
    assert _etcd_state(portal) == before

    async def age(etcd: Etcd) -> None:
        key = portal.keys.join_token(token_id)
        record = JoinToken.from_json((await etcd.get(key)).value)
        await etcd.put(key, record.replace(expires_at=time.time() - 1).to_json())

    portal.etcd_call(age)
    with pytest.raises(Forbidden):
        portal.loop.run(jointokens.redeem(made["token"], MACHINE, peer=None))
    assert portal.api().get("/join-tokens").json()[0]["state"] == "expired"
    assert portal.api().get("/join-tokens").json()[0]["state"] == "expired"
    assert _actions(token_id).count("expire") == 1  # noticed once


def test_a_machine_is_refused_a_name_in_use_or_while_no_deploy_machine_takes_joins(
        portal: InProcessPortal) -> None:
    made = _made(portal)
    before = _etcd_state(portal)
    with pytest.raises(Conflict, match="accept-joins"):
        portal.loop.run(jointokens.redeem(made["token"], MACHINE, peer=None))
    _publish_deploy_key(portal)
    taken = {**MACHINE, "name": "h4"}

    async def register(etcd: Etcd) -> None:  # a node h4 registered meanwhile
        await etcd.put(portal.keys.node("h4"), b'{"name": "h4"}')

    portal.etcd_call(register)
    with pytest.raises(Conflict, match="name: a node named"):
        portal.loop.run(jointokens.redeem(made["token"], taken, peer=None))
    after = _etcd_state(portal)
    after.pop(portal.keys.deploy_ssh_key)
    after.pop(portal.keys.node(taken["name"]))
    assert after == before
    assert portal.api().get("/join-tokens").json()[0]["state"] == "unused"


# --- the whole join: listener, new machine, deploy machine ---------------------------------------


@pytest.fixture
def join_url(portal: InProcessPortal) -> Iterator[str]:
    running = joinlistener.JoinListener(
        "127.0.0.1:0", tls.ServerTls(tls.portal(settings.CLOUD.pki_dir),
                                     build=tls.open_server_context))
    portal.loop.run(running.start())
    try:
        yield f"https://127.0.0.1:{running.port}"
    finally:
        portal.loop.run(running.stop())


class PortalCluster:
    """What deploy.joins needs of the deploy's Cluster, on the portal's etcd."""

    def __init__(self, portal: InProcessPortal):
        self.keys = portal.keys
        self.run = portal.etcd_call


def _deploy_context(tmp_path: Path) -> Context:
    directory = tmp_path / "deploy"
    directory.mkdir()
    (tmp_path / "id_ed25519.pub").write_text(DEPLOY_KEY + "\n")
    cloudconfig.save(directory, CloudConfig(
        name="lab", nodes=(NodeConfig("h1", "10.0.0.11", etcd=True, portal=True,
                                      network_node=True),),
        ssh=SshConfig(key=str(tmp_path / "id_ed25519"),
                      known_hosts=str(tmp_path / "known_hosts"))))
    return Context(DeployDir(directory), say=lambda message: None)


def test_a_machine_joins_over_the_pinned_listener_and_the_deploy_machine_adds_it(
        portal: InProcessPortal, join_url: str, tmp_path: Path) -> None:
    ctx, cluster = _deploy_context(tmp_path), PortalCluster(portal)
    made = _made(portal, etcd=True)
    host_key = tmp_path / "ssh_host_ed25519_key.pub"
    host_key.write_text(HOST_KEY + " root@h4\n")
    authorized = tmp_path / "h4-root" / "authorized_keys"
    added: list[NodeConfig] = []
    outcome: dict[str, Any] = {}

    def machine() -> None:
        try:
            outcome["node"] = joinclient.join(
                join_url, made["token"], made["ca_sha256"], name="h4", address="10.0.0.14",
                host_key_path=str(host_key), authorized_keys=authorized, wait=60, interval=0.2)
        except joinclient.JoinError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=machine)
    thread.start()
    # The machine came first: it waits (the portal's 409) until the deploy
    # machine takes joins, with its token still unused.
    time.sleep(1)
    assert thread.is_alive(), outcome
    assert portal.api().get("/join-tokens").json()[0]["state"] == "unused"
    joins.publish_key(cluster, tmp_path / "id_ed25519.pub")  # type: ignore[arg-type]
    deadline = time.monotonic() + 30
    while not (found := joins.pending(cluster)):  # type: ignore[arg-type]
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.1)
    record, revision = found[0]
    # The deploy machine's key is in before anyone reaches the machine over SSH.
    assert authorized.read_text() == DEPLOY_KEY + "\n"
    ended = joins.take(ctx, cluster, record, revision,  # type: ignore[arg-type]
                       adding=lambda c, node: added.append(node))
    thread.join(30)
    assert outcome == {"node": "h4"}
    assert ended is not None and ended.join_state == "joined"
    assert added == [NodeConfig("h4", "10.0.0.14", etcd=True)]
    assert (tmp_path / "known_hosts").read_text() == f"10.0.0.14 {HOST_KEY}\n"
    # Taken once: a second acceptor finds nothing pending.
    assert joins.pending(cluster) == []  # type: ignore[arg-type]
    assert joins.take(ctx, cluster, record, revision) is None  # type: ignore[arg-type]
    listed = portal.api().get("/join-tokens").json()[0]
    assert (listed["state"], listed["join_state"], listed["node"]) == ("used", "joined", "h4")
    used = AuditEvent.objects.get(action="join", object_id="h4")
    assert used.source == "127.0.0.1" and f"join token {made['id']} used by h4" in used.detail


def test_a_bare_machine_gets_the_join_script_its_command_checks_and_it_runs_alone(
        portal: InProcessPortal, join_url: str, tmp_path: Path) -> None:
    made = _made(portal)
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # as curl -k: the SHA-256 below is the check
    with urllib.request.urlopen(f"{join_url}/join/sfcloud-join.py",  # noqa: S310
                                context=unverified, timeout=10) as answer:
        served = answer.read()
    assert served == jointokens.JOIN_SCRIPT.read_bytes()
    assert f"echo '{hashlib.sha256(served).hexdigest()}  sfcloud-join.py'" in made["bootstrap"]
    # Standard library only: the system's Python runs it with nothing of
    # sfcloud on its path (-I: isolated, not even the current directory).
    script = tmp_path / "sfcloud-join.py"
    script.write_bytes(served)
    ran = subprocess.run(["/usr/bin/python3", "-I", str(script), "--help"],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert ran.returncode == 0 and "--ca-sha256" in ran.stdout, ran.stderr
    # And it keeps its word: a wrong pin sends nothing.
    ran = subprocess.run(["/usr/bin/python3", "-I", str(script), join_url, "--token",
                          made["token"], "--ca-sha256", "0" * 64, "--wait", "5"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert ran.returncode == 1 and "sha" in ran.stderr.lower(), ran.stderr
    assert portal.api().get("/join-tokens").json()[0]["state"] == "unused"


def test_a_failed_add_reaches_the_machine_with_its_reason(
        portal: InProcessPortal, join_url: str, tmp_path: Path) -> None:
    ctx, cluster = _deploy_context(tmp_path), PortalCluster(portal)
    joins.publish_key(cluster, tmp_path / "id_ed25519.pub")  # type: ignore[arg-type]
    made = _made(portal)
    used, _ = portal.loop.run(jointokens.redeem(made["token"], MACHINE, peer=None))

    def refuse(c: Context, node: NodeConfig) -> None:
        raise DeployError(f"{node.address} did not answer over SSH")

    record, revision = joins.pending(cluster)[0]  # type: ignore[arg-type]
    ended = joins.take(ctx, cluster, record, revision, adding=refuse)  # type: ignore[arg-type]
    assert ended is not None and ended.join_state == "failed"
    portal_side = joinclient.Portal(join_url, joinclient.trusted_ca(join_url, made["ca_sha256"]))
    said = portal_side.call("GET", "/join/progress", token=made["token"])
    assert said == {"node": "h4", "state": "failed",
                    "message": "10.0.0.14 did not answer over SSH"}


def test_a_join_whose_acceptor_died_half_way_is_taken_over(
        portal: InProcessPortal, tmp_path: Path) -> None:
    said: list[str] = []
    ctx, cluster = _deploy_context(tmp_path), PortalCluster(portal)
    ctx.say = said.append
    _publish_deploy_key(portal)
    made = _made(portal, etcd=True)
    portal.loop.run(jointokens.redeem(made["token"], MACHINE, peer=None))
    [(record, _)] = joins.pending(cluster)  # type: ignore[arg-type]
    claim = portal.keys.join_taken(record.id)

    # An acceptor claimed it (on its lease) and then died half-way.
    async def claimed_by_an_acceptor(etcd: Etcd) -> int:
        lease = await etcd.grant_lease(60)
        await etcd.txn([], [Put(portal.keys.join_token(record.id),
                                record.replace(join_state="joining").to_json()),
                            Put(claim, b"dead", lease=lease)])
        return lease

    lease = portal.etcd_call(claimed_by_an_acceptor)
    assert joins.pending(cluster) == []  # type: ignore[arg-type]  # while it lives
    portal.etcd_call(lambda etcd: etcd.revoke_lease(lease))  # as etcd does after its TTL
    [(again, revision)] = joins.pending(cluster)  # type: ignore[arg-type]
    assert again.join_state == "joining"
    added: list[NodeConfig] = []
    ended = joins.take(ctx, cluster, again, revision,  # type: ignore[arg-type]
                       adding=lambda c, node: added.append(node))
    assert ended is not None and ended.join_state == "joined"
    assert added == [NodeConfig("h4", "10.0.0.14", etcd=True)]
    assert any("again: the acceptor that began it is gone" in line for line in said), said
    assert portal.etcd_call(lambda etcd: etcd.get(claim)) is None  # released at its end
    assert joins.pending(cluster) == []  # type: ignore[arg-type]


def test_accept_joins_sleeps_on_a_watch_and_takes_a_join_at_once(
        portal: InProcessPortal, tmp_path: Path) -> None:
    ctx, cluster = _deploy_context(tmp_path), PortalCluster(portal)
    ctx.cluster = lambda config: cluster  # type: ignore[method-assign]
    taken: list[float] = []
    outcome: dict[str, Any] = {}

    def accepting() -> None:
        try:
            outcome["joined"] = joins.accept(ctx, once=True, timeout=60,
                                             adding=lambda c, node: taken.append(time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=accepting)
    thread.start()
    deadline = time.monotonic() + 20
    while portal.etcd_call(lambda etcd: etcd.get(portal.keys.deploy_ssh_key)) is None:
        assert time.monotonic() < deadline and thread.is_alive(), outcome
        time.sleep(0.1)
    time.sleep(1)  # asleep on its watch by now
    made = _made(portal)
    used = time.monotonic()
    portal.loop.run(jointokens.redeem(made["token"], MACHINE, peer=None))
    thread.join(30)
    assert outcome == {"joined": 1}
    # joins.WAKE (30 s) is when it would have looked again without the watch.
    assert taken and taken[0] - used < 3, taken[0] - used


def test_a_wrong_pin_sends_nothing_and_a_used_token_is_refused_on_the_wire(
        portal: InProcessPortal, join_url: str, tmp_path: Path) -> None:
    _publish_deploy_key(portal)
    made = _made(portal)
    before = _etcd_state(portal)
    with pytest.raises(joinclient.JoinError, match="not the pinned one"):
        joinclient.join(join_url, made["token"], "0" * 64, name="h4", address="10.0.0.14",
                        host_key_path=None, authorized_keys=tmp_path / "keys")
    assert _etcd_state(portal) == before
    assert not (tmp_path / "keys").exists()
    portal_side = joinclient.Portal(join_url, joinclient.trusted_ca(join_url, made["ca_sha256"]))
    first = portal_side.call("POST", "/join", {"token": made["token"], **MACHINE})
    assert first["node"] == "h4" and first["deploy_ssh_key"] == DEPLOY_KEY
    with pytest.raises(joinclient.JoinError, match=r"refused \(403\)"):
        portal_side.call("POST", "/join", {"token": made["token"], **MACHINE})
    with pytest.raises(joinclient.JoinError, match=r"refused \(400\).*host_key"):
        portal_side.call("POST", "/join", {"token": made["token"], **MACHINE, "host_key": "x"})
    with pytest.raises(joinclient.JoinError, match=r"refused \(401\)"):
        portal_side.call("GET", "/join/progress")
