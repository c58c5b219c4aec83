"""Where sfcloud follows Shaken Fist's own semantics (issues 15 and 19), each
checked the way a Shaken Fist user meets it: with the real ``sf-client``
0.8.3, or its API as a script would call it.

Objects that need no guest are written straight into etcd on a node that
does not exist (tests.support.objects), so these tests boot no VM unless
the behaviour is about one.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from cloudstate.model import NodeInfo
from tests.support.cloud import Cloud
from tests.support.objects import mark_torn_down, put_instance

pytestmark = pytest.mark.integration


def sf_json(cloud: Cloud, *args: str, **kwargs: object) -> object:
    return json.loads(cloud.sf("--json", *args, **kwargs).stdout)  # type: ignore[arg-type]


def fresh_namespace(cloud: Cloud, stem: str) -> tuple[str, str]:
    """A namespace with a key, made through the API as an admin would: (name, secret)."""
    name = f"{stem}-{secrets.token_hex(3)}"
    secret = secrets.token_urlsafe(18)
    api = cloud.api()
    assert api.post("/auth/namespaces", {"namespace": name}).status_code == 200
    assert api.post(f"/auth/namespaces/{name}/keys",
                    {"key_name": "k", "key": secret}).status_code == 200
    return name, secret


# --- issue 19 #1: everything under /api answers JSON ------------------------------------------


@pytest.mark.parametrize("method,path,status", [
    ("POST", "/api/no-such-thing/foo", 404),
    ("GET", "/api/instances/x/nonsense", 404),
    ("GET", "/api/blobs-and-more/1/2/3", 404),
    ("PATCH", "/api/instances", 405),
    ("PUT", "/api/nodes", 405),
])
def test_every_api_answer_is_json(cloud: Cloud, method: str, path: str, status: int) -> None:
    response = requests.request(method, cloud.url + path, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]


def test_the_client_reads_an_unknown_route_as_not_found(cloud: Cloud) -> None:
    # Authenticated or not, a route that does not exist is a JSON 404, never HTML.
    response = cloud.api().get("/label/nothing-here/at-all")
    assert response.status_code == 404 and response.json()["status"] == 404


# --- issue 15: health, capabilities --------------------------------------------------------


def test_health_endpoints_need_no_credentials(cloud: Cloud) -> None:
    for base in (cloud.url, cloud.api_url):
        live = requests.get(f"{base}/livez", timeout=10)
        assert (live.status_code, live.text) == (200, "ok")
        assert live.headers["Content-Type"].startswith("text/plain")
        for path in ("readyz", "healthz"):
            ready = requests.get(f"{base}/{path}", timeout=10)
            assert (ready.status_code, ready.text) == (200, "ready")


def test_capabilities_name_only_what_works(cloud: Cloud) -> None:
    page = requests.get(cloud.api_url, timeout=10).text
    for offered in ("node-get", "node-metadata", "events-by-type", "hot-plug-interface",
                    "provide-dns", "list-addresses", "route-addresses", "extra-dns-entries"):
        assert offered in page, offered
    # The in-guest agent's routes are not offered; an async network delete never is.
    for missing in ("instance-get", "instance-execute", "instance-put-blob",
                    "instance-screenshot", "agentoperations", "network-delete-async"):
        assert missing not in page, missing
    # So the client does not even try: its own check refuses the command.
    result = cloud.sf("instance", "download", "x", "/etc/hostname", "/dev/null", check=False)
    assert result.returncode != 0 and "instance-get" not in cloud.log_text("portal")


# --- issue 19 #2: duplicate names ------------------------------------------------------------


def test_duplicate_instance_names_are_allowed_and_ambiguous_as_references(cloud: Cloud) -> None:
    namespace, key = fresh_namespace(cloud, "dups")
    first = put_instance(cloud, namespace, "twin")
    second = put_instance(cloud, namespace, "twin")
    api = cloud.api(namespace, key)
    listed = [i["uuid"] for i in api.get("/instances").json() if i["name"] == "twin"]
    assert sorted(listed) == sorted([first, second])
    result = cloud.sf("instance", "show", "twin", namespace=namespace, key=key, check=False)
    assert result.returncode != 0
    assert f'multiple instances have the name "twin" in namespace "{namespace}"' in \
        result.stdout + result.stderr
    # By UUID each is itself.
    assert sf_json(cloud, "instance", "show", first, namespace=namespace, key=key)["uuid"] == first
    for uuid in (first, second):
        api.delete(f"/instances/{uuid}")
        mark_torn_down(cloud, uuid)


def test_a_create_with_a_name_in_use_is_not_refused(cloud: Cloud) -> None:
    namespace, key = fresh_namespace(cloud, "dupcreate")
    uuid = put_instance(cloud, namespace, "taken")
    # The system namespace creates in it, on a node that does not exist
    # (choosing a node is the system namespace's call).
    response = cloud.api().post("/instances", {
        "name": "taken", "cpus": 1, "memory": 64, "disk": [{"size": 1}],
        "namespace": namespace, "placed_on": "no-such-node"})
    # Past the name (no 409): refused only for the node it asked for.
    assert response.status_code == 404, response.text
    assert "no node named" in response.json()["error"]
    cloud.api(namespace, key).delete(f"/instances/{uuid}")
    mark_torn_down(cloud, uuid)


# --- issue 19 #9: host bits ------------------------------------------------------------------


def test_a_netblock_with_host_bits_names_the_network_to_use(cloud: Cloud) -> None:
    result = cloud.sf("network", "create", "hostbits", "192.168.1.2/24", check=False)
    assert result.returncode != 0
    assert ("192.168.1.2/24 has host bits set: the range that address is in is "
            "192.168.1.0/24; give that") in result.stdout + result.stderr
    assert cloud.api().get("/networks/hostbits").status_code == 404


# --- issue 19 #12 and the event queries ------------------------------------------------------


def test_events_carry_the_operation_and_unknown_types_are_empty(cloud: Cloud) -> None:
    namespace, key = fresh_namespace(cloud, "events")
    uuid = put_instance(cloud, namespace, "evented")
    api = cloud.api(namespace, key)
    api.request("PUT", f"/instances/{uuid}/metadata/colour", {"value": "blue"})
    events = sf_json(cloud, "instance", "events", uuid, namespace=namespace, key=key)
    assert isinstance(events, list)
    mine = [e for e in events if e["message"].startswith("metadata colour set")]
    assert mine and mine[0]["operation"] == "set-metadata" and mine[0]["type"] == "audit"
    # A type no event has, or one Shaken Fist never had: an empty list, not an error.
    for kind in ("resources", "no-such-type"):
        assert sf_json(cloud, "instance", "events", "-t", kind, uuid, namespace=namespace,
                       key=key) == []
    # -l arrives as a string; a negative limit is every event.
    assert len(sf_json(cloud, "instance", "events", "-l", "1", uuid, namespace=namespace,
                       key=key)) == 1
    assert len(api.get(f"/instances/{uuid}/events", {"limit": -1}).json()) == len(events)
    api.delete(f"/instances/{uuid}")
    mark_torn_down(cloud, uuid)


# --- instance delete with a namespace, collection metadata POST -------------------------------


def test_delete_honours_the_namespace_in_its_body(cloud: Cloud) -> None:
    namespace, _ = fresh_namespace(cloud, "delns")
    other, _ = fresh_namespace(cloud, "delother")
    uuid = put_instance(cloud, namespace, "scoped")
    api = cloud.api()
    refused = api.delete(f"/instances/{uuid}", {"namespace": other})
    assert refused.status_code == 404 and f"not in namespace {other}" in refused.json()["error"]
    assert api.get(f"/instances/{uuid}").json()["state"] != "deleting"
    assert api.delete(f"/instances/{uuid}", {"namespace": "no-such-ns"}).status_code == 404
    result = cloud.sf("instance", "delete", "--namespace", other, uuid, check=False)
    assert result.returncode != 0
    deleted = api.delete(f"/instances/{uuid}", {"namespace": namespace})
    assert deleted.status_code == 200 and deleted.json()["state"] == "deleting"
    mark_torn_down(cloud, uuid)


def test_collection_metadata_routes_take_post(cloud: Cloud) -> None:
    namespace, key = fresh_namespace(cloud, "metapost")
    uuid = put_instance(cloud, namespace, "tagged")
    api = cloud.api(namespace, key)
    network = api.post("/networks", {"name": "metanet", "netblock": "10.97.0.0/24",
                                     "provide_nat": False}).json()["uuid"]
    for base in (f"/instances/{uuid}", f"/networks/{network}",
                 f"/auth/namespaces/{namespace}"):
        response = api.post(f"{base}/metadata", {"key": "team", "value": "blue"})
        assert response.status_code == 200, (base, response.text)
        assert api.get(f"{base}/metadata").json()["team"] == "blue"
        missing = api.post(f"{base}/metadata", {"value": "x"})
        assert missing.status_code == 400 and "key" in missing.json()["error"]
    node_meta = f"/nodes/{cloud.node}/metadata"
    assert cloud.api().post(node_meta, {"key": "rack", "value": "r1"}).status_code == 200
    assert api.post(node_meta, {"key": "rack", "value": "r2"}).status_code == 403
    assert cloud.api().get(node_meta).json() == {"rack": "r1"}
    assert cloud.api().delete(f"{node_meta}/rack").status_code == 200
    api.delete(f"/instances/{uuid}")
    mark_torn_down(cloud, uuid)
    api.delete(f"/networks/{network}")


# --- nodes -------------------------------------------------------------------------------------


def put_ghost_node(cloud: Cloud, name: str) -> None:
    """A node that registered once and whose agent is gone (no lease)."""
    info = NodeInfo(name=name, ip="192.0.2.99", vcpus=2, memory_mib=2048, disk_total_gb=20,
                    disk_free_gb=10, virt_type="qemu", machine="pc", started_at=time.time() - 60)
    cloud.etcd_call(lambda etcd: etcd.put(cloud.keys.node(name), info.to_json()))


def test_node_show_metadata_and_delete(cloud: Cloud) -> None:
    shown = sf_json(cloud, "node", "show", cloud.node)
    assert shown["is_cluster_maintainer"] is False and shown["name"] == cloud.node
    pretty = cloud.sf("node", "show", cloud.node).stdout
    assert "cluster maintainer       : False" in pretty
    cloud.api().request("PUT", f"/nodes/{cloud.node}/metadata/rack", {"value": "r7"})
    assert "r7" in cloud.sf("node", "show", cloud.node).stdout
    cloud.api().delete(f"/nodes/{cloud.node}/metadata/rack")

    # An online node is refused: its agent would register again at once.
    refused = cloud.sf("node", "delete", cloud.node, check=False)
    assert refused.returncode != 0 and "is online" in refused.stdout + refused.stderr

    # A node gone for good that still holds an instance is refused, naming it.
    gone = f"gone-{secrets.token_hex(3)}"
    uuid = put_instance(cloud, "system", "stranded", node=gone)
    response = cloud.api().delete(f"/nodes/{gone}")
    assert response.status_code == 404  # never registered: nothing to delete
    put_ghost_node(cloud, gone)
    response = cloud.api().delete(f"/nodes/{gone}")
    assert response.status_code == 409, response.text
    assert f"still hosts 1 instance: stranded ({uuid})" in response.json()["error"]
    # Once its instance is gone, the node goes too.
    cloud.api().delete(f"/instances/{uuid}")
    mark_torn_down(cloud, uuid, node=gone)
    cloud.sf("node", "delete", gone)
    assert cloud.api().get(f"/nodes/{gone}").status_code == 404
    assert gone not in [n["name"] for n in sf_json(cloud, "node", "list")]
    assert cloud.etcd_keys(f"nodes/{gone}") == []
    # Other namespaces may not see nodes at all.
    namespace, key = fresh_namespace(cloud, "nonodes")
    assert cloud.api(namespace, key).delete(f"/nodes/{cloud.node}").status_code == 403


# --- namespaces: trust and key names ---------------------------------------------------------


def test_namespace_trust_lets_another_namespace_see_yours(cloud: Cloud) -> None:
    owner, _ = fresh_namespace(cloud, "truster")
    friend, friend_key = fresh_namespace(cloud, "friend")
    as_friend = cloud.api(friend, friend_key)
    assert as_friend.get(f"/auth/namespaces/{owner}").status_code == 404

    cloud.sf("namespace", "add-trust", owner, friend)
    shown = as_friend.get(f"/auth/namespaces/{owner}").json()
    assert shown["trust"] == {"full": ["system", friend]}
    assert owner in [ns["name"] for ns in as_friend.get("/auth/namespaces").json()]
    assert as_friend.get(f"/auth/namespaces/{owner}/keys").json() == ["k"]
    # Seeing is not changing.
    refused = as_friend.post(f"/auth/namespaces/{owner}/keys", {"key_name": "x",
                                                                "key": "a-long-secret-1"})
    assert refused.status_code == 403
    # Twice is once; trusting a namespace that does not exist is refused.
    cloud.sf("namespace", "add-trust", owner, friend)
    assert cloud.api().get(f"/auth/namespaces/{owner}").json()["trust"]["full"] == \
        ["system", friend]
    missing = cloud.api().post(f"/auth/namespaces/{owner}/trust",
                               {"external_namespace": "no-such-namespace"})
    assert missing.status_code == 404

    cloud.sf("namespace", "remove-trust", owner, friend)
    assert as_friend.get(f"/auth/namespaces/{owner}").status_code == 404
    # System can't be removed (a no-op, as in Shaken Fist).
    kept = cloud.api().delete(f"/auth/namespaces/{owner}/trust/system")
    assert kept.status_code == 200 and kept.json()["trust"]["full"] == ["system"]
