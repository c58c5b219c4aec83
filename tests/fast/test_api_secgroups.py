"""Security groups, their rules and address sets through the API: shapes,
names or UUIDs, the default group, quotas, bulk rules that go in all or not
at all, bad input that gets a 4xx naming the problem and changes nothing,
and an interface's groups changed live (on interfaces of a node that does
not exist, so no guest boots).

Who may call each route is in test_authorization_matrix.py; what a node
does with the groups is tried in tests/integration/networks/
(test_secgroups_filter.py on namespaces, test_secgroups_guests.py with guests).
"""

from __future__ import annotations

import secrets

import pytest

from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal as Cloud
from tests.support.objects import put_instance, put_interface


def group_keys(cloud: Cloud) -> list[str]:
    return sorted(cloud.etcd_keys("secgroups/") + cloud.etcd_keys("names/secgroups/")
                  + cloud.etcd_keys("addrsets/"))


@pytest.fixture
def cloud(portal: Cloud) -> Cloud:
    return portal


@pytest.fixture
def api(cloud: Cloud):  # type: ignore[no-untyped-def]
    """A namespace of the test's own, so quotas and defaults start afresh."""
    name = f"sg{secrets.token_hex(3)}"
    client = cloud.make_namespace(name)
    yield client
    for group in client.get("/security-groups").json():
        if group["name"] != "default":
            client.delete(f"/security-groups/{group['uuid']}")
    for address_set in client.get("/address-sets").json():
        client.delete(f"/address-sets/{address_set['uuid']}")


def test_the_default_group_and_a_group_with_rules(api) -> None:  # type: ignore[no-untyped-def]
    groups = api.get("/security-groups").json()
    assert [g["name"] for g in groups] == ["default"]
    default = groups[0]
    for key in ("uuid", "name", "namespace", "state", "metadata", "rules", "description",
                "attached_interfaces", "version", "created"):
        assert key in default, key
    assert default["state"] == "created" and default["namespace"] == api.namespace
    # Anything out; anything in from its own members.
    assert sorted((r["direction"], r["protocol"], r["remote"] and r["remote"].get("group"))
                  for r in default["rules"]) == [("egress", "any", None),
                                                 ("ingress", "any", default["uuid"])]
    assert api.get("/security-groups/default").json()["uuid"] == default["uuid"]

    response = api.post("/security-groups", {
        "name": "web", "description": "the front",
        "rules": [{"direction": "ingress", "protocol": "tcp", "ports": "443,80,81-90",
                   "remote": {"cidrs": ["10.0.0.5/8"]}, "description": "http"},
                  {"direction": "ingress", "protocol": "icmp", "icmp_type": 8},
                  {"direction": "ingress", "protocol": 6, "ports": 22,
                   "remote": {"group": "default"}}]})
    assert response.status_code == 200, response.text
    web = response.json()
    assert web["name"] == "web" and web["description"] == "the front"
    first, ping, ssh = web["rules"]
    # Canonical: sorted and merged ports, host bits dropped, protocols by name.
    assert (first["ports"], first["remote"]) == ("80-90,443", {"cidrs": ["10.0.0.0/8"]})
    assert (ping["protocol"], ping["icmp_type"], ping["remote"]) == ("icmp", 8, None)
    assert (ssh["protocol"], ssh["remote"]) == ("tcp", {"group": default["uuid"],
                                                        "name": "default"})
    assert api.get(f"/security-groups/{web['uuid']}").json() == web
    assert api.get("/security-groups/web/rules").json() == web["rules"]

    # Add one rule, then two at once; remove one.
    added = api.post("/security-groups/web/rules",
                     {"direction": "egress", "protocol": "udp", "ports": "53"})
    assert added.status_code == 200, added.text
    assert len(added.json()) == 4
    both = api.post("/security-groups/web/rules", {"rules": [
        {"direction": "egress", "protocol": "tcp", "ports": "443"},
        {"direction": "egress", "protocol": "tcp", "ports": "80"}]})
    assert both.status_code == 200 and len(both.json()) == 6
    generation = api.get("/security-groups/web").json()["generation"]
    assert api.delete(f"/security-groups/web/rules/{ping['uuid']}").json() is None
    after = api.get("/security-groups/web").json()
    assert ping["uuid"] not in [r["uuid"] for r in after["rules"]]
    assert after["generation"] == generation + 1
    assert api.delete(f"/security-groups/web/rules/{ping['uuid']}").status_code == 404

    # Its events and the audit trail say who did what.
    events = [e["message"] for e in api.get("/security-groups/web/events").json()]
    assert any(m.startswith("created by") for m in events), events
    assert any(m.startswith("rule removed: ingress icmp type 8") for m in events), events

    # Metadata, as other objects have it.
    assert api.request("PUT", "/security-groups/web/metadata/team", {"value": "a"}).json() \
        is None
    assert api.get("/security-groups/web/metadata").json() == {"team": "a"}

    # Deleted: gone from lists, its name free again. The default group stays.
    assert api.delete("/security-groups/web").status_code == 200
    assert api.get("/security-groups/web").status_code == 404
    response = api.delete("/security-groups/default")
    assert response.status_code == 409 and "can't be deleted" in response.json()["error"]


@pytest.mark.parametrize("rule,status,expected", [
    ({"direction": "sideways"}, 400, "is not ingress or egress"),
    ({"direction": "ingress", "protocol": "sctp"}, 400, "is not a protocol"),
    ({"direction": "ingress", "protocol": 300}, 400, "is not a protocol"),
    ({"direction": "ingress", "protocol": "icmp", "ports": "22"}, 400, "only tcp and udp"),
    ({"direction": "ingress", "protocol": "tcp", "ports": "0-10"}, 400, "from 1 to 65535"),
    ({"direction": "ingress", "protocol": "tcp", "ports": "90-80"}, 400, "from 1 to 65535"),
    ({"direction": "ingress", "protocol": "tcp", "ports": "http"}, 400, "not a port"),
    ({"direction": "ingress", "protocol": "tcp", "icmp_type": 8}, 400, "only icmp rules"),
    ({"direction": "ingress", "protocol": "icmp", "icmp_code": 1}, 400, "needs an icmp type"),
    ({"direction": "ingress", "ethertype": "ipv6"}, 400, "only ipv4"),
    ({"direction": "ingress", "remote": {"cidrs": ["fd00::/8"]}}, 400, "IPv6"),
    ({"direction": "ingress", "remote": {"cidrs": ["10.0.0.300/8"]}}, 400, "is not a CIDR block"),
    ({"direction": "ingress", "remote": {"cidrs": "10.0.0.0/8"}}, 400, "must be a list"),
    ({"direction": "ingress", "remote": {"cidrs": ["10.0.0.0/8"], "group": "default"}}, 400,
     "give only one remote end"),
    ({"direction": "ingress", "remote": {"group": "nosuch"}}, 404,
     'no security group "nosuch" in namespace'),
    ({"direction": "ingress", "remote": {"address_set": "nosuch"}}, 404,
     'no address set "nosuch" in namespace'),
    ({"direction": "ingress", "description": "x" * 256}, 400, "longer than 255"),
    ({"direction": "ingress", "description": "two\nlines"}, 400, "control characters"),
    ("ingress", 400, "must be an object"),
])
def test_bad_rules_are_refused_and_change_nothing(api, cloud: Cloud, rule: object,  # type: ignore[no-untyped-def]
                                                  status: int, expected: str) -> None:
    api.get("/security-groups")  # the default group exists from here on
    before = group_keys(cloud)
    response = api.post("/security-groups", {"name": "bad", "rules": [rule]})
    assert response.status_code == status, response.text
    assert expected in response.json()["error"], response.json()
    assert group_keys(cloud) == before


def test_bulk_rules_go_in_all_or_none_and_duplicates_are_refused(api) -> None:  # type: ignore[no-untyped-def]
    group = api.post("/security-groups", {"name": "bulk", "rules": [
        {"direction": "ingress", "protocol": "tcp", "ports": "22"}]}).json()
    response = api.post("/security-groups/bulk/rules", {"rules": [
        {"direction": "ingress", "protocol": "tcp", "ports": "80"},
        {"direction": "ingress", "protocol": "tcp", "ports": "no"}]})
    assert response.status_code == 400 and "rules[1].ports" in response.json()["error"]
    response = api.post("/security-groups/bulk/rules",
                        {"direction": "ingress", "protocol": "tcp", "ports": "22",
                         "description": "the same, described"})
    assert response.status_code == 409 and "already has this rule" in response.json()["error"]
    response = api.post("/security-groups/bulk/rules", {"rules": [
        {"direction": "egress", "protocol": "udp"}, {"direction": "egress", "protocol": "udp"}]})
    assert response.status_code == 409 and "the same rule as rules[0]" in response.json()["error"]
    assert api.get("/security-groups/bulk").json()["rules"] == group["rules"]
    response = api.post("/security-groups", {"name": "bulk"})
    assert response.status_code == 409 and "already exists" in response.json()["error"]
    for bad, message in (({"name": "no/slash"}, "not a valid security group name"),
                         ({"name": "ok", "rules": {"direction": "ingress"}}, "must be a list")):
        response = api.post("/security-groups", bad)
        assert response.status_code == 400 and message in response.json()["error"]


def test_limits_are_clear_refusals(cloud: Cloud, api) -> None:  # type: ignore[no-untyped-def]
    limit = 10  # the security_groups quota a new namespace gets (this one is made in the database)
    assert cloud.api().put(f"/auth/namespaces/{api.namespace}/quota",
                           {"security_groups": limit}).status_code == 200
    for index in range(limit - 1):  # the default group counts
        assert api.post("/security-groups", {"name": f"q{index}"}).status_code == 200
    response = api.post("/security-groups", {"name": "one-too-many"})
    assert response.status_code == 403
    assert response.json()["error"] == \
        "quota exceeded: security_groups limit 10, in use 10, asked 1"
    quota = cloud.api().get(f"/auth/namespaces/{api.namespace}/quota").json()["quota"]
    assert quota["security_groups"]["in_use"] == 10
    assert api.delete("/security-groups/q1").status_code == 200
    assert api.post("/security-groups", {"name": "fits-again"}).status_code == 200
    too_many = [{"direction": "ingress", "protocol": "tcp", "ports": str(port)}
                for port in range(1, 102)]
    response = api.post("/security-groups/q0/rules", {"rules": too_many})
    assert response.status_code == 409
    assert "SFCLOUD_RULES_PER_SECURITY_GROUP" in response.json()["error"]
    assert api.get("/security-groups/q0").json()["rules"] == []


def test_address_sets_and_what_refuses_a_delete(api) -> None:  # type: ignore[no-untyped-def]
    response = api.post("/address-sets", {"name": "office",
                                          "cidrs": ["192.0.2.7/24", "198.51.100.1"]})
    assert response.status_code == 200, response.text
    office = response.json()
    assert office["cidrs"] == ["192.0.2.0/24", "198.51.100.1/32"]
    group = api.post("/security-groups", {"name": "admin", "rules": [
        {"direction": "ingress", "protocol": "tcp", "ports": 22,
         "remote": {"address_set": "office"}}]}).json()
    assert group["rules"][0]["remote"] == {"address_set": office["uuid"], "name": "office"}
    updated = api.request("PUT", "/address-sets/office", {"cidrs": ["203.0.113.0/24"]})
    assert updated.json()["cidrs"] == ["203.0.113.0/24"]
    assert updated.json()["generation"] == office["generation"] + 1
    response = api.request("PUT", "/address-sets/office", {"cidrs": ["nope"]})
    assert response.status_code == 400 and "is not a CIDR block" in response.json()["error"]
    response = api.delete("/address-sets/office")
    assert response.status_code == 409 and "admin" in response.json()["error"]

    # A group named by another group's rule can't go either.
    api.post("/security-groups", {"name": "db", "rules": [
        {"direction": "ingress", "remote": {"group": "admin"}}]})
    response = api.delete("/security-groups/admin")
    assert response.status_code == 409 and "db" in response.json()["error"]
    assert api.delete("/security-groups/db").status_code == 200
    assert api.delete("/security-groups/admin").status_code == 200
    assert api.delete("/address-sets/office").status_code == 200
    assert api.get("/address-sets").json() == []


def test_an_interfaces_groups_change_live_and_block_a_delete(cloud: Cloud, api) -> None:  # type: ignore[no-untyped-def]
    namespace = api.namespace
    network = cloud.api().post("/networks", {"namespace": namespace, "name": "n",
                                             "netblock": "10.98.0.0/24",
                                             "provide_nat": False}).json()
    instance = put_instance(cloud, namespace, "ghost")
    nic = put_interface(cloud, namespace, instance, network["uuid"])
    try:
        api.post("/security-groups", {"name": "web", "rules": [
            {"direction": "ingress", "protocol": "tcp", "ports": "8080"}]})
        response = api.request("PUT", f"/interfaces/{nic}/security-groups",
                               {"security_groups": ["web", "default"]})
        assert response.status_code == 200, response.text
        shown = response.json()
        web, default = (api.get(f"/security-groups/{n}").json()["uuid"]
                        for n in ("web", "default"))
        assert shown["security_groups"] == [web, default]
        assert shown["port_security"] is True
        # No node runs it: nothing is in force yet.
        assert shown["filtering"]["state"] == "pending"
        assert shown["filtering"]["group_names"] == {web: "web", default: "default"}
        assert api.get("/security-groups/web").json()["attached_interfaces"] == 1
        users = api.get("/security-groups/web/interfaces").json()
        assert [u["uuid"] for u in users] == [nic]

        response = api.delete("/security-groups/web")
        assert response.status_code == 409 and "in use by 1 interface" in response.json()["error"]
        response = api.request("PUT", f"/interfaces/{nic}/security-groups",
                               {"security_groups": ["nosuch"]})
        assert response.status_code == 404 and "nosuch" in response.json()["error"]
        assert api.get(f"/interfaces/{nic}").json()["security_groups"] == [web, default]

        # Filtering off takes it out of its groups; back on, it is in default.
        off = api.request("PUT", f"/interfaces/{nic}/port-security", {"port_security": False})
        assert off.status_code == 200, off.text
        assert (off.json()["port_security"], off.json()["security_groups"]) == (False, [])
        response = api.request("PUT", f"/interfaces/{nic}/security-groups",
                               {"security_groups": ["web"]})
        assert response.status_code == 409 and "port security off" in response.json()["error"]
        on = api.request("PUT", f"/interfaces/{nic}/port-security", {"port_security": True})
        assert on.json()["security_groups"] == [default]
        response = api.request("PUT", f"/interfaces/{nic}/allowed-addresses",
                               {"allowed_addresses": ["10.98.0.50"]})
        assert response.json()["allowed_addresses"] == ["10.98.0.50/32"]
        response = api.request("PUT", f"/interfaces/{nic}/allowed-addresses", {})
        assert response.status_code == 400 and "allowed_addresses: missing" in \
            response.json()["error"]

        # Someone else's namespace sees none of it.
        outsider = cloud.make_namespace(f"{namespace}-x")
        for method, path in (("GET", "/security-groups/web"),
                             ("PUT", f"/interfaces/{nic}/security-groups")):
            assert outsider.request(method, path, {"security_groups": []}).status_code == 404
        assert api.delete("/security-groups/web").status_code == 200
    finally:
        for key in (cloud.keys.interface(nic), cloud.keys.instance(instance),
                    cloud.keys.instance_name(namespace, "ghost")):
            cloud.etcd_call(lambda etcd, k=key: etcd.delete(k))
        assert cloud.api().delete(f"/networks/{network['uuid']}").status_code == 200


def test_the_capability_is_announced(cloud: Cloud) -> None:
    page = cloud.api().get("/").text
    assert "<li>security-groups: security-groups, address-sets, port-security</li>" in page


# --- instances' NICs ---------------------------------------------------------------------------

# What a refused create must not have made or reserved.
CREATE_KEYS = ("instances/", "names/instances/", "interfaces/", "ipam/", "macs/", "fences/")


def _create_keys(cloud: Cloud) -> list[str]:
    # A network's own addresses (gateway, DHCP) are in ipam/ from its creation.
    return sorted(key for family in CREATE_KEYS for key in cloud.etcd_keys(family))


@pytest.fixture
def lan(cloud: Cloud, api, agent: FakeAgent, demo_image: str) -> str:  # type: ignore[no-untyped-def]
    response = cloud.api().post("/networks", {"namespace": api.namespace, "name": "lan",
                                              "netblock": "10.97.0.0/24", "provide_nat": False})
    assert response.status_code == 200, response.text
    agent.report_network(response.json()["uuid"])
    return response.json()["uuid"]


def _vm(name: str, **nic: object) -> dict:
    return {"name": name, "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
            "network": [{"network_uuid": "lan", **nic}]}


@pytest.mark.parametrize("nic,status,expected", [
    ({"security_groups": ["nosuch"]}, 404, 'no security group "nosuch" in namespace'),
    ({"security_groups": ["web"], "port_security": False}, 400,
     "port_security off has no security groups"),
    ({"security_groups": [f"g{n}" for n in range(9)]}, 400, "at most 8"),
    ({"security_groups": [5]}, 400, "must be a list of security group names or UUIDs"),
    ({"security_groups": "web", "allowed_addresses": ["10.0.0.1/33"]}, 400,
     "network[0].allowed_addresses[0]"),
    ({"port_security": "maybe"}, 400, "network[0].port_security"),
])
def test_a_create_naming_bad_groups_makes_nothing(cloud: Cloud, api, lan: str,  # type: ignore[no-untyped-def]
                                                  nic: dict, status: int, expected: str) -> None:
    api.post("/security-groups", {"name": "web"})
    # A group of another namespace is as unknown as one nobody made.
    cloud.make_namespace(f"{api.namespace}-o").post("/security-groups", {"name": "theirs"})
    before = _create_keys(cloud)
    response = api.post("/instances", _vm("bad", **nic))
    assert response.status_code == status, response.text
    assert expected in response.json()["error"]
    assert _create_keys(cloud) == before
    response = api.post("/instances", _vm("bad", security_groups=["theirs"]))
    assert response.status_code == 404 and "theirs" in response.json()["error"]
    assert _create_keys(cloud) == before


def test_created_nics_get_the_default_group_or_the_groups_given(cloud: Cloud, api,  # type: ignore[no-untyped-def]
                                                                lan: str) -> None:
    web = api.post("/security-groups", {"name": "web"}).json()
    response = api.post("/instances", {**_vm("two"), "network": [
        {"network_uuid": "lan"},
        {"network_uuid": "lan", "security_groups": "web,default"},
        {"network_uuid": "lan", "port_security": False}]})
    assert response.status_code == 200, response.text
    default = api.get("/security-groups/default").json()["uuid"]
    nics = sorted(api.get(f"/instances/{response.json()['uuid']}/interfaces").json(),
                  key=lambda nic: nic["order"])
    assert [(nic["security_groups"], nic["port_security"]) for nic in nics] == [
        ([default], True), ([web["uuid"], default], True), ([], False)]
    assert api.get("/security-groups/web").json()["attached_interfaces"] == 1


def test_hot_plugged_nics_take_groups_as_created_ones_do(cloud: Cloud, api, lan: str,  # type: ignore[no-untyped-def]
                                                         agent: FakeAgent) -> None:
    web = api.post("/security-groups", {"name": "web"}).json()
    made = api.post("/instances", _vm("plugged"))
    assert made.status_code == 200, made.text
    uuid = made.json()["uuid"]
    agent.report_instance(uuid, state="created", power_state="on")
    default = api.get("/security-groups/default").json()["uuid"]

    def plug(**nic: object):  # type: ignore[no-untyped-def]
        return api.post(f"/instances/{uuid}/interfaces",
                        {"network": {"network_uuid": "lan", **nic}})

    # Refused, nothing made: a group it can't see, groups without filtering.
    before = _create_keys(cloud)
    for nic, status, expected in (
            ({"security_groups": ["nosuch"]}, 404, 'no security group "nosuch"'),
            ({"security_groups": ["web"], "port_security": False}, 400, "has no security"),
            ({"security_groups": {"web": 1}}, 400, "must be a list of security group")):
        response = plug(**nic)
        assert response.status_code == status, response.text
        assert expected in response.json()["error"]
    assert _create_keys(cloud) == before
    assert len(api.get(f"/instances/{uuid}/interfaces").json()) == 1

    # The groups given, the default for none, none with filtering off.
    shown = [plug(security_groups=["web"]).json(), plug().json(),
             plug(port_security=False).json()]
    assert [(nic["order"], nic["security_groups"], nic["port_security"]) for nic in shown] == [
        (1, [web["uuid"]], True), (2, [default], True), (3, [], False)]
    assert api.get("/security-groups/web/interfaces").json()[0]["uuid"] == shown[0]["uuid"]
    # In use now: the group can't go while the plugged NIC names it.
    response = api.delete("/security-groups/web")
    assert response.status_code == 409 and "in use by 1 interface" in response.json()["error"]
