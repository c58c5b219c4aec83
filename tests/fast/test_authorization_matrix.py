"""Who may do what, on every route the portal serves.

The routes are discovered, not listed by hand: the test walks Django's
URLconf and the websocket routes, and fails if any route has no entry in
MATRIX below. A new page, API endpoint, htmx partial or websocket therefore
can't ship without saying who may use it.

Each entry gives, for each method tried, what each of these callers gets:
a member and a viewer of namespace A (which owns the objects tried), an
admin of another namespace B, an admin of ``system``, nobody (anonymous),
an expired personal token, and a token from a key that has been deleted.
Objects of a namespace the caller can't see answer 404, never 403.

It runs in process (tests.support.inprocess): one portal and one world for
the module, as the real server would hold them, with a fake agent's node
(tests.support.fakeagent) for the routes that show nodes. No guest is
needed: the instances tried are records on a node that runs nothing.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from cloudstate import quotas
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import (
    Browser,
    Closed,
    InProcessPortal,
    Refused,
    Reply,
    Socket,
    personal_token,
)
from tests.support.objects import (
    PUBLIC_KEY,
    put_image,
    put_instance,
    put_interface,
    put_uploaded,
)

MEMBER, VIEWER, OTHER, SYSTEM = "owner member", "owner viewer", "other admin", "system admin"
ANON, EXPIRED, REVOKED = "anonymous", "expired token", "revoked key"
EVERYONE = [MEMBER, VIEWER, OTHER, SYSTEM, ANON, EXPIRED, REVOKED]
LOGIN = "login"  # a redirect to the log-in page
MOVED = "redirect"  # any other redirect (the action was done, or the page moved on)
NO_CREDENTIALS = (ANON, EXPIRED, REVOKED)
MATRIX_BYTES = b"matrix bytes" * 100


@dataclass
class World:
    cloud: InProcessPortal
    node: str  # the fake agent's
    ns_a: str
    ns_b: str
    instance_a: str
    users: dict[str, int]
    tokens: dict[str, str]  # caller -> API bearer token
    sessions: dict[str, Browser]
    spare_token_id: int
    spare_user: int
    image_a: str = ""
    stored_a: str = ""  # an artifact of A with a real blob (uploaded)
    blob_a: str = ""  # that blob
    upload_a: str = ""  # an upload of A, not converted
    keypair_a: str = ""
    network_a: str = ""
    interface_a: str = ""
    secgroup_a: str = ""
    rule_a: str = ""
    address_set_a: str = ""
    counter: Iterator[int] = field(default_factory=lambda: iter(range(10_000)))

    def unique(self, stem: str) -> str:
        return f"{stem}-{secrets.token_hex(3)}{next(self.counter)}"

    def fresh_instance(self) -> str:
        return put_instance(self.cloud, self.ns_a, self.unique("m"))

    def fresh_image(self) -> str:
        return put_image(self.cloud, self.ns_a, self.unique("img"))

    def fresh_label(self) -> str:
        """The API path of a label of A, just made on A's blob."""
        name = self.unique("lbl")
        response = self.cloud.api().post(f"/label/{self.ns_a}/{name}",
                                         {"blob_uuid": self.blob_a})
        assert response.status_code == 200, response.text
        return f"/api/label/{self.ns_a}/{name}"

    def fresh_upload(self) -> str:
        response = self.cloud.api().post("/upload", {"namespace": self.ns_a})
        assert response.status_code == 200, response.text
        return response.json()["uuid"]

    def fresh_keypair(self) -> str:
        response = self.cloud.api().post("/keypairs", {
            "namespace": self.ns_a, "name": self.unique("kp"), "public_key": PUBLIC_KEY})
        assert response.status_code == 200, response.text
        return response.json()["uuid"]

    def fresh_network(self) -> str:
        response = self.cloud.api().post("/networks", {
            "namespace": self.ns_a, "name": self.unique("net"), "netblock": "10.99.0.0/24",
            "provide_nat": False})
        assert response.status_code == 200, response.text
        return response.json()["uuid"]

    def fresh_person(self) -> int:
        """A person nobody else uses, for a check that deletes one."""
        return self.cloud.person(self.unique("gone")).user_id

    def fresh_secgroup(self) -> str:
        """A group of A to delete: one a refused delete left, else a new one
        (a namespace may only have so many)."""
        spare = [g["uuid"] for g in self.cloud.api().get(
            "/security-groups", {"namespace": self.ns_a}).json()
                 if g["name"].startswith("sg-") and g["uuid"] != self.secgroup_a]
        if spare:
            return spare[0]
        response = self.cloud.api().post("/security-groups", {
            "namespace": self.ns_a, "name": self.unique("sg"),
            "rules": [{"direction": "ingress", "protocol": "tcp", "ports": "22"}]})
        assert response.status_code == 200, response.text
        return response.json()["uuid"]

    def fresh_rule(self) -> str:
        """A rule just added to A's group."""
        response = self.cloud.api().post(f"/security-groups/{self.secgroup_a}/rules", {
            "direction": "ingress", "protocol": "udp", "ports": str(next(self.counter) + 1)})
        assert response.status_code == 200, response.text
        return response.json()[-1]["uuid"]

    def fresh_address_set(self) -> str:
        response = self.cloud.api().post("/address-sets", {
            "namespace": self.ns_a, "name": self.unique("as"), "cidrs": ["192.0.2.0/24"]})
        assert response.status_code == 200, response.text
        return response.json()["uuid"]

    def fresh_namespace(self) -> str:
        name = self.unique("tmp")
        assert self.cloud.api().post("/auth/namespaces", {"namespace": name}).status_code == 200
        return name

    def fresh_key(self) -> str:
        name = self.unique("k")
        response = self.cloud.api().post(f"/auth/namespaces/{self.ns_a}/keys",
                                         {"key_name": name, "key": secrets.token_urlsafe(16)})
        assert response.status_code == 200, response.text
        return name


Url = Callable[[World, str], str]
Body = Callable[[World, str], dict[str, Any]]


@dataclass
class Check:
    method: str
    url: Url
    expect: dict[str, int | str]
    body: Body | None = None
    htmx: bool = False


def fixed(path: str) -> Url:
    return lambda w, who: path.format(a=w.ns_a, b=w.ns_b, inst=w.instance_a,
                                      node=w.node, member=w.users[MEMBER],
                                      spare=w.users["spare"], token=w.spare_token_id,
                                      image=w.image_a, keypair=w.keypair_a, net=w.network_a,
                                      iface=w.interface_a, stored=w.stored_a, blob=w.blob_a,
                                      upload=w.upload_a, sg=w.secgroup_a, rule=w.rule_a,
                                      aset=w.address_set_a)


def api(**outcomes: int) -> dict[str, int | str]:
    """Outcomes by caller for the API: callers without credentials get 401."""
    return {**_named(outcomes), **{who: 401 for who in NO_CREDENTIALS}}


def page(**outcomes: int | str) -> dict[str, int | str]:
    """Outcomes for a page: callers without a session are sent to log in
    (a bearer token means nothing to a page)."""
    return {**_named(outcomes), **{who: LOGIN for who in NO_CREDENTIALS}}


def _named(outcomes: dict[str, int | str]) -> dict[str, int | str]:
    names = {"member": MEMBER, "viewer": VIEWER, "other": OTHER, "system": SYSTEM}
    return {names[k]: v for k, v in outcomes.items()}


def all_(outcome: int | str) -> dict[str, int | str]:
    return dict.fromkeys(EVERYONE, outcome)


READ_A = {"member": 200, "viewer": 200, "other": 404, "system": 200}
OPERATE_A = {"member": 200, "viewer": 403, "other": 404, "system": 200}
OPERATE_A_NOT_READY = {"member": 406, "viewer": 403, "other": 404, "system": 406}
# The bytes of uploads and blobs are on the fake agent's node, whose agent has no
# server: whoever gets past the roles hears it can't be reached.
READ_A_ON_NODE = {"member": 503, "viewer": 503, "other": 404, "system": 503}
OPERATE_A_ON_NODE = {"member": 503, "viewer": 403, "other": 404, "system": 503}
ADMIN_A_API = {"member": 403, "viewer": 403, "other": 404, "system": 200}
SYSTEM_ONLY = {"member": 403, "viewer": 403, "other": 403, "system": 200}


def fresh_ns_for_system(w: World, who: str) -> str:
    """Deleting: A for everyone who must be refused, a fresh empty one for
    the system admin (who may)."""
    return w.fresh_namespace() if who == SYSTEM else w.ns_a


MATRIX: dict[str, list[Check]] = {
    # --- the JSON API -----------------------------------------------------------------------
    "api": [Check("GET", fixed("/api"), all_(200))],
    "api/": [Check("GET", fixed("/api/"), all_(200))],
    # The API's description, as JSON and as a page: public, as GET /api is.
    "api/openapi.json": [Check("GET", fixed("/api/openapi.json"), all_(200))],
    "api/docs": [Check("GET", fixed("/api/docs"), all_(200))],
    "api/auth": [Check("POST", fixed("/api/auth"), all_(401),
                       body=lambda w, who: {"namespace": w.ns_a, "key": "not-the-key"})],
    "api/auth/namespaces": [
        Check("GET", fixed("/api/auth/namespaces"),
              api(member=200, viewer=200, other=200, system=200)),
        Check("POST", fixed("/api/auth/namespaces"), api(**SYSTEM_ONLY),
              body=lambda w, who: {"namespace": w.unique("made")}),
    ],
    "api/auth/namespaces/<str:namespace>": [
        Check("GET", fixed("/api/auth/namespaces/{a}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/auth/namespaces/{fresh_ns_for_system(w, who)}",
              api(**ADMIN_A_API)),
    ],
    "api/auth/namespaces/<str:namespace>/keys": [
        Check("GET", fixed("/api/auth/namespaces/{a}/keys"), api(**READ_A)),
        Check("POST", fixed("/api/auth/namespaces/{a}/keys"), api(**ADMIN_A_API),
              body=lambda w, who: {"key_name": w.unique("k"), "key": secrets.token_urlsafe(16)}),
        Check("PUT", fixed("/api/auth/namespaces/{a}/keys"), api(**ADMIN_A_API),
              body=lambda w, who: {"key_name": w.fresh_key(), "key": secrets.token_urlsafe(16)}),
    ],
    "api/auth/namespaces/<str:namespace>/keys/<str:key_name>": [
        Check("PUT", lambda w, who: f"/api/auth/namespaces/{w.ns_a}/keys/{w.fresh_key()}",
              api(**ADMIN_A_API), body=lambda w, who: {"key": secrets.token_urlsafe(16)}),
        Check("DELETE", lambda w, who: f"/api/auth/namespaces/{w.ns_a}/keys/{w.fresh_key()}",
              api(**ADMIN_A_API)),
    ],
    "api/auth/namespaces/<str:namespace>/metadata": [
        Check("GET", fixed("/api/auth/namespaces/{a}/metadata"), api(**READ_A)),
        Check("POST", fixed("/api/auth/namespaces/{a}/metadata"), api(**ADMIN_A_API),
              body=lambda w, who: {"key": "shade", "value": "dark"}),
    ],
    "api/auth/namespaces/<str:namespace>/quota": [
        Check("GET", fixed("/api/auth/namespaces/{a}/quota"), api(**READ_A)),
        # Setting quotas is the system admins' (a namespace's own admins may only read them).
        Check("PUT", fixed("/api/auth/namespaces/{a}/quota"), api(**ADMIN_A_API),
              body=lambda w, who: {"snapshot_bytes": None}),
    ],
    # Trusting a fresh namespace each time: no caller comes to see A through it.
    "api/auth/namespaces/<str:namespace>/trust": [
        Check("POST", fixed("/api/auth/namespaces/{a}/trust"), api(**ADMIN_A_API),
              body=lambda w, who: {"external_namespace": w.fresh_namespace()})],
    "api/auth/namespaces/<str:namespace>/trust/<str:other>": [
        Check("DELETE", lambda w, who: f"/api/auth/namespaces/{w.ns_a}/trust/"
                                       f"{w.fresh_namespace()}", api(**ADMIN_A_API))],
    "api/auth/namespaces/<str:namespace>/metadata/<str:key>": [
        Check("PUT", fixed("/api/auth/namespaces/{a}/metadata/colour"), api(**ADMIN_A_API),
              body=lambda w, who: {"value": "blue"}),
        Check("DELETE", lambda w, who: _with_metadata(w, "gone"), api(**ADMIN_A_API)),
    ],
    "api/instances": [
        Check("GET", fixed("/api/instances"), api(member=200, viewer=200, other=200, system=200)),
        # A create that passes the role checks fails validation (400): no guest is made.
        Check("POST", fixed("/api/instances"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a, "name": "x", "cpus": 0}),
        Check("DELETE", fixed("/api/instances"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a}),
    ],
    "api/instances/<str:ref>": [
        Check("GET", fixed("/api/instances/{inst}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/instances/{w.fresh_instance()}",
              api(member=200, viewer=403, other=404, system=200)),
    ],
    "api/instances/<str:ref>/metadata": [
        Check("GET", fixed("/api/instances/{inst}/metadata"), api(**READ_A)),
        Check("POST", fixed("/api/instances/{inst}/metadata"), api(**OPERATE_A),
              body=lambda w, who: {"key": "shade", "value": "dark"})],
    # A hot-plugged NIC is reserved (its node, a ghost, never plugs it in).
    "api/instances/<str:ref>/interfaces": [
        Check("GET", fixed("/api/instances/{inst}/interfaces"), api(**READ_A)),
        Check("POST", fixed("/api/instances/{inst}/interfaces"), api(**OPERATE_A),
              body=lambda w, who: {"network": {"network_uuid": w.network_a}})],
    "api/instances/<str:ref>/interfaces/<str:uuid>": [
        Check("DELETE", lambda w, who: _hot_plugged(w), api(**OPERATE_A))],
    # The instance's node is a ghost, so whoever gets past the roles hears it is offline.
    "api/instances/<str:ref>/consoledata": [
        Check("GET", fixed("/api/instances/{inst}/consoledata"),
              api(member=503, viewer=503, other=404, system=503)),
        Check("DELETE", fixed("/api/instances/{inst}/consoledata"),
              api(member=503, viewer=403, other=404, system=503)),
    ],
    "api/nodes": [Check("GET", fixed("/api/nodes"), api(**SYSTEM_ONLY))],
    "api/nodes/<str:ref>": [
        Check("GET", fixed("/api/nodes/{node}"), api(**SYSTEM_ONLY)),
        # The node is online: past the role check, deleting it is refused (409).
        Check("DELETE", fixed("/api/nodes/{node}"), api(**{**SYSTEM_ONLY, "system": 409}))],
    "api/nodes/<str:ref>/maintenance": [
        Check("POST", fixed("/api/nodes/{node}/maintenance"), api(**SYSTEM_ONLY),
              body=lambda w, who: {"maintenance": False})],
    # Join tokens: system admins only (a system member is refused too, tried in
    # tests/fast/test_join_tokens.py); revoking one that is not there is a 404.
    "api/join-tokens": [
        Check("GET", fixed("/api/join-tokens"), api(**SYSTEM_ONLY)),
        Check("POST", fixed("/api/join-tokens"), api(**SYSTEM_ONLY),
              body=lambda w, who: {"etcd": False})],
    "api/join-tokens/<str:token_id>": [
        Check("DELETE", fixed("/api/join-tokens/0123456789ab"),
              api(**{**SYSTEM_ONLY, "system": 404}))],
    "api/nodes/<str:ref>/metadata": [
        Check("GET", fixed("/api/nodes/{node}/metadata"), api(**SYSTEM_ONLY)),
        Check("POST", fixed("/api/nodes/{node}/metadata"), api(**SYSTEM_ONLY),
              body=lambda w, who: {"key": "rack", "value": "r1"})],
    "api/nodes/<str:ref>/metadata/<str:key>": [
        Check("PUT", fixed("/api/nodes/{node}/metadata/rack"), api(**SYSTEM_ONLY),
              body=lambda w, who: {"value": "r2"}),
        Check("DELETE", lambda w, who: _with_node_metadata(w), api(**SYSTEM_ONLY))],
    # Health: anyone, no credentials needed (a load balancer has none).
    **{route: [Check("GET", fixed("/" + route), all_(200))]
       for route in ("api/livez", "api/readyz", "api/healthz", "livez", "readyz", "healthz")},
    # Whatever no route matches under /api: a JSON 404 for everyone.
    "api^/.*$": [Check("GET", fixed("/api/no-such-route"), all_(404)),
                 Check("POST", fixed("/api/labels/nothing"), all_(404))],
    # Instance operations. The instance tried is never built (its node does not exist), so
    # a caller who passes the role checks is told to retry (406), as Shaken Fist's client
    # expects while an instance is not yet created.
    **{f"api/instances/<str:ref>/{verb}": [
        Check("POST", fixed(f"/api/instances/{{inst}}/{verb}"), api(**OPERATE_A_NOT_READY))]
       for verb in ("poweron", "poweroff", "pause", "unpause", "rebootsoft", "reboothard")},
    "api/instances/<str:ref>/snapshot": [
        Check("GET", fixed("/api/instances/{inst}/snapshot"), api(**READ_A)),
        Check("POST", fixed("/api/instances/{inst}/snapshot"), api(**OPERATE_A_NOT_READY),
              body=lambda w, who: {"all": True}),
    ],
    "api/instances/<str:ref>/metadata/<str:key>": [
        Check("PUT", fixed("/api/instances/{inst}/metadata/colour"), api(**OPERATE_A),
              body=lambda w, who: {"value": "blue"}),
        Check("DELETE", lambda w, who: _with_instance_metadata(w), api(**OPERATE_A)),
    ],
    "api/instances/<str:ref>/events": [
        Check("GET", fixed("/api/instances/{inst}/events"), api(**READ_A))],
    "api/nodes/<str:ref>/events": [
        Check("GET", fixed("/api/nodes/{node}/events"), api(**SYSTEM_ONLY))],
    "api/artifacts": [
        Check("GET", fixed("/api/artifacts"), api(member=200, viewer=200, other=200, system=200)),
        # Past the role checks, the URL is refused (400): nothing is fetched.
        Check("POST", fixed("/api/artifacts"), api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a, "url": "http://169.254.169.254/x"}),
        # namespace clean, unconfirmed: refused past the role checks.
        Check("DELETE", fixed("/api/artifacts"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a}),
    ],
    "api/artifacts/<str:ref>": [
        Check("GET", fixed("/api/artifacts/{image}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/artifacts/{w.fresh_image()}", api(**OPERATE_A)),
    ],
    "api/artifacts/<str:ref>/events": [
        Check("GET", fixed("/api/artifacts/{image}/events"), api(**READ_A))],
    # Neither an upload nor a blob named: refused past the role checks.
    "api/artifacts/upload/<str:name>": [
        Check("POST", fixed("/api/artifacts/upload/made"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a})],
    "api/artifacts/<str:ref>/versions": [
        Check("GET", fixed("/api/artifacts/{stored}/versions"), api(**READ_A)),
        Check("POST", fixed("/api/artifacts/{stored}/versions"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"max_versions": "many"}),
    ],
    "api/artifacts/<str:ref>/versions/<str:index>": [
        Check("DELETE", lambda w, who: f"/api/artifacts/{w.fresh_image()}/versions/1",
              api(**OPERATE_A))],
    # Only the system namespace's artifacts are shared: A's never, by anyone.
    "api/artifacts/<str:ref>/share": [
        Check("POST", fixed("/api/artifacts/{image}/share"),
              api(member=403, viewer=403, other=404, system=403))],
    "api/artifacts/<str:ref>/unshare": [
        Check("POST", fixed("/api/artifacts/{image}/unshare"),
              api(member=403, viewer=403, other=404, system=403))],
    "api/artifacts/<str:ref>/metadata": [
        Check("GET", fixed("/api/artifacts/{image}/metadata"), api(**READ_A)),
        Check("POST", fixed("/api/artifacts/{image}/metadata"), api(**OPERATE_A),
              body=lambda w, who: {"key": "colour", "value": "blue"}),
    ],
    "api/artifacts/<str:ref>/metadata/<str:key>": [
        Check("PUT", fixed("/api/artifacts/{image}/metadata/shade"), api(**OPERATE_A),
              body=lambda w, who: {"value": "dark"}),
        Check("DELETE", lambda w, who: _with_object_metadata(w, "artifacts", w.image_a),
              api(**OPERATE_A)),
    ],
    "api/blobs": [
        Check("GET", fixed("/api/blobs"), api(member=200, viewer=200, other=200, system=200))],
    "api/blobs/<str:ref>": [Check("GET", fixed("/api/blobs/{blob}"), api(**READ_A))],
    "api/blobs/<str:ref>/data": [
        Check("GET", fixed("/api/blobs/{blob}/data"), api(**READ_A_ON_NODE))],
    "api/blobs/<str:ref>/events": [
        Check("GET", fixed("/api/blobs/{blob}/events"), api(**READ_A))],
    "api/blobs/<str:ref>/metadata": [
        Check("GET", fixed("/api/blobs/{blob}/metadata"), api(**READ_A)),
        Check("POST", fixed("/api/blobs/{blob}/metadata"), api(**OPERATE_A),
              body=lambda w, who: {"key": "colour", "value": "blue"}),
    ],
    "api/blobs/<str:ref>/metadata/<str:key>": [
        Check("PUT", fixed("/api/blobs/{blob}/metadata/shade"), api(**OPERATE_A),
              body=lambda w, who: {"value": "dark"}),
        Check("DELETE", lambda w, who: _with_object_metadata(w, "blobs", w.blob_a),
              api(**OPERATE_A)),
    ],
    # Anyone may ask; only those who may see A's blob find it (others get null).
    "api/blob_checksums/<str:algorithm>/<str:digest>": [
        Check("GET", lambda w, who: f"/api/blob_checksums/sha512/{_sha512_of_blob(w)}",
              api(member=200, viewer=200, other=200, system=200))],
    "api/upload": [
        Check("POST", fixed("/api/upload"), api(member=200, viewer=403, other=404, system=200),
              body=lambda w, who: {"namespace": w.ns_a})],
    "api/upload/<str:ref>": [
        Check("GET", fixed("/api/upload/{upload}"), api(**READ_A_ON_NODE)),
        Check("POST", fixed("/api/upload/{upload}"), api(**OPERATE_A_ON_NODE),
              body=lambda w, who: {"some": "bytes"}),
    ],
    "api/upload/<str:ref>/truncate/<str:offset>": [
        Check("POST", fixed("/api/upload/{upload}/truncate/0"), api(**OPERATE_A_ON_NODE))],
    "api/label/<path:name>": [
        Check("GET", lambda w, who: w.fresh_label(), api(**READ_A)),
        Check("POST", lambda w, who: f"/api/label/{w.ns_a}/{w.unique('lbl')}", api(**OPERATE_A),
              body=lambda w, who: {"blob_uuid": w.blob_a}),
        Check("DELETE", lambda w, who: w.fresh_label(), api(**OPERATE_A)),
    ],
    "api/keypairs": [
        Check("GET", fixed("/api/keypairs"), api(member=200, viewer=200, other=200, system=200)),
        Check("POST", fixed("/api/keypairs"), api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a, "name": "k", "public_key": "nope"}),
    ],
    "api/keypairs/<str:ref>": [
        Check("GET", fixed("/api/keypairs/{keypair}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/keypairs/{w.fresh_keypair()}", api(**OPERATE_A)),
    ],
    "api/networks": [
        Check("GET", fixed("/api/networks"), api(member=200, viewer=200, other=200, system=200)),
        # Past the role checks, the range is refused (400): nothing is made.
        Check("POST", fixed("/api/networks"), api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a, "name": "n", "netblock": "bad"}),
        Check("DELETE", fixed("/api/networks"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a}),
    ],
    "api/networks/<str:ref>": [
        Check("GET", fixed("/api/networks/{net}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/networks/{w.fresh_network()}", api(**OPERATE_A)),
    ],
    **{f"api/networks/<str:ref>/{part}": [
        Check("GET", fixed(f"/api/networks/{{net}}/{part}"), api(**READ_A))]
       for part in ("interfaces", "addresses", "events")},
    "api/networks/<str:ref>/metadata": [
        Check("GET", fixed("/api/networks/{net}/metadata"), api(**READ_A)),
        Check("POST", fixed("/api/networks/{net}/metadata"), api(**OPERATE_A),
              body=lambda w, who: {"key": "shade", "value": "dark"})],
    # An address of the floating network, reserved for A's network (no network node
    # here routes it).
    "api/networks/<str:ref>/route": [
        Check("POST", fixed("/api/networks/{net}/route"),
              api(member=200, viewer=403, other=404, system=200))],
    "api/networks/<str:ref>/route/<str:address>": [
        Check("DELETE", lambda w, who: _routed(w, who), api(**OPERATE_A))],
    # The network has no DNS of its own: past the role checks, 406.
    "api/networks/<str:ref>/dns": [
        Check("POST", fixed("/api/networks/{net}/dns"),
              api(member=406, viewer=403, other=404, system=406),
              body=lambda w, who: {"name": "db", "value": "10.99.0.9"}),
        Check("DELETE", fixed("/api/networks/{net}/dns"),
              api(member=406, viewer=403, other=404, system=406),
              body=lambda w, who: {"name": "db"})],
    # Pinging is the network node's agent's job: past the role checks, 503 here.
    "api/networks/<str:ref>/ping/<str:address>": [
        Check("GET", fixed("/api/networks/{net}/ping/10.99.0.1"),
              api(member=503, viewer=403, other=404, system=503))],
    "api/networks/<str:ref>/metadata/<str:key>": [
        Check("PUT", fixed("/api/networks/{net}/metadata/colour"), api(**OPERATE_A),
              body=lambda w, who: {"value": "blue"}),
        Check("DELETE", lambda w, who: _with_network_metadata(w), api(**OPERATE_A)),
    ],
    "api/interfaces/<str:uuid>": [
        Check("GET", fixed("/api/interfaces/{iface}"), api(**READ_A))],
    # The interface tried has no address: past the role checks, a float is refused (409),
    # and so is a defloat (it has no floating address).
    **{f"api/interfaces/<str:uuid>/{verb}": [
        Check("POST", fixed(f"/api/interfaces/{{iface}}/{verb}"),
              api(member=409, viewer=403, other=404, system=409))]
       for verb in ("float", "defloat")},

    "api/security-groups": [
        Check("GET", fixed("/api/security-groups"),
              api(member=200, viewer=200, other=200, system=200)),
        # Past the role checks, the name is refused (400): nothing is made.
        Check("POST", fixed("/api/security-groups"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a, "name": "no/such"}),
    ],
    "api/security-groups/<str:ref>": [
        Check("GET", fixed("/api/security-groups/{sg}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/security-groups/{w.fresh_secgroup()}",
              api(**OPERATE_A)),
    ],
    "api/security-groups/<str:ref>/rules": [
        Check("GET", fixed("/api/security-groups/{sg}/rules"), api(**READ_A)),
        Check("POST", fixed("/api/security-groups/{sg}/rules"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"direction": "ingress", "protocol": "tcp", "ports": "x"}),
    ],
    "api/security-groups/<str:ref>/rules/<str:rule_uuid>": [
        Check("GET", fixed("/api/security-groups/{sg}/rules/{rule}"), api(**READ_A)),
        Check("DELETE", lambda w, who: f"/api/security-groups/{w.secgroup_a}/rules/"
                                       f"{w.fresh_rule()}", api(**OPERATE_A)),
    ],
    **{f"api/security-groups/<str:ref>/{part}": [
        Check("GET", fixed(f"/api/security-groups/{{sg}}/{part}"), api(**READ_A))]
       for part in ("interfaces", "metadata", "events")},
    "api/security-groups/<str:ref>/metadata/<str:key>": [
        Check("PUT", fixed("/api/security-groups/{sg}/metadata/colour"), api(**OPERATE_A),
              body=lambda w, who: {"value": "blue"}),
        Check("DELETE", lambda w, who: _with_secgroup_metadata(w), api(**OPERATE_A)),
    ],
    "api/address-sets": [
        Check("GET", fixed("/api/address-sets"),
              api(member=200, viewer=200, other=200, system=200)),
        Check("POST", fixed("/api/address-sets"),
              api(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"namespace": w.ns_a, "name": "x", "cidrs": ["nope"]}),
    ],
    "api/address-sets/<str:ref>": [
        Check("GET", fixed("/api/address-sets/{aset}"), api(**READ_A)),
        Check("PUT", fixed("/api/address-sets/{aset}"), api(**OPERATE_A),
              body=lambda w, who: {"cidrs": ["198.51.100.0/24"]}),
        Check("DELETE", lambda w, who: f"/api/address-sets/{w.fresh_address_set()}",
              api(**OPERATE_A)),
    ],
    "api/address-sets/<str:ref>/events": [
        Check("GET", fixed("/api/address-sets/{aset}/events"), api(**READ_A))],
    "api/interfaces/<str:uuid>/security-groups": [
        Check("GET", fixed("/api/interfaces/{iface}/security-groups"), api(**READ_A)),
        Check("PUT", fixed("/api/interfaces/{iface}/security-groups"), api(**OPERATE_A),
              body=lambda w, who: {"security_groups": ["default"]}),
    ],
    "api/interfaces/<str:uuid>/port-security": [
        Check("PUT", fixed("/api/interfaces/{iface}/port-security"), api(**OPERATE_A),
              body=lambda w, who: {"port_security": True})],
    "api/interfaces/<str:uuid>/allowed-addresses": [
        Check("PUT", fixed("/api/interfaces/{iface}/allowed-addresses"), api(**OPERATE_A),
              body=lambda w, who: {"allowed_addresses": []})],

    # --- pages ----------------------------------------------------------------------------------
    # The dashboard: everyone sees it, each what they may see (e2e/test_usage.py).
    "": [Check("GET", fixed("/"), page(member=200, viewer=200, other=200, system=200))],
    # The cloud of this test sets no metrics token: /metrics is off for every caller.
    "metrics": [Check("GET", fixed("/metrics"), all_(404))],
    # Graphs' history: A's instance is on a node that does not exist, so whoever may see
    # it hears that the node is offline; nodes' history is for members of system, who
    # hear that the fake agent's node has no server to ask (tests/integration/
    # test_usage.py reads a real agent's).
    "instances/<uuid:uuid>/usage/": [
        Check("GET", fixed("/instances/{inst}/usage/"),
              page(member=503, viewer=503, other=404, system=503))],
    "nodes/<str:name>/usage/": [
        Check("GET", fixed("/nodes/{node}/usage/?range=day"),
              page(member=403, viewer=403, other=403, system=503))],
    "styleguide/": [Check("GET", fixed("/styleguide/"), all_(404))],
    "login/": [Check("GET", fixed("/login/"),
                     {**dict.fromkeys([MEMBER, VIEWER, OTHER, SYSTEM], MOVED),
                      **dict.fromkeys(NO_CREDENTIALS, 200)})],
    # Logging out is tried in its own test; here: only POST is accepted.
    "logout/": [Check("GET", fixed("/logout/"), all_(405))],
    "namespace/": [Check("POST", fixed("/namespace/"),
                         page(member=MOVED, viewer=MOVED, other=MOVED, system=MOVED),
                         body=lambda w, who: {"namespace": w.ns_a, "next": "/instances/"})],
    "account/tokens/": [
        Check("GET", fixed("/account/tokens/"),
              page(member=200, viewer=200, other=200, system=200)),
        Check("POST", fixed("/account/tokens/"),
              page(member=200, viewer=200, other=200, system=200),
              body=lambda w, who: {"name": w.unique("t"), "days": "7"}),
    ],
    "account/tokens/<int:token_id>/revoke/": [
        Check("POST", fixed("/account/tokens/{token}/revoke/"),
              page(member=MOVED, viewer=404, other=404, system=404))],
    "account/password/": [Check("GET", fixed("/account/password/"),
                                page(member=200, viewer=200, other=200, system=200))],
    "instances/": [Check("GET", fixed("/instances/"),
                         page(member=200, viewer=200, other=200, system=200))],
    "instances/new/": [Check("GET", fixed("/instances/new/"),
                             page(member=200, viewer=403, other=200, system=200))],
    "instances/<uuid:uuid>/": [Check("GET", fixed("/instances/{inst}/"), page(**READ_A))],
    "instances/<uuid:uuid>/<tab:tab>/": [
        Check("GET", fixed("/instances/{inst}/console/"), page(**READ_A)),
        Check("GET", fixed("/instances/{inst}/events/"), page(**READ_A))],
    # The list's "with the selected": a page naming them first, then done (a redirect).
    "instances/bulk/": [
        Check("POST", fixed("/instances/bulk/"), page(**OPERATE_A),
              body=lambda w, who: {"action": "pause", "uuid": w.instance_a}),
        Check("POST", lambda w, who: "/instances/bulk/",
              page(member=MOVED, viewer=403, other=404, system=MOVED),
              body=lambda w, who: {"action": "delete", "uuid": w.fresh_instance(),
                                   "confirmed": "yes"})],
    "instances/<uuid:uuid>/delete/": [
        Check("POST", lambda w, who: f"/instances/{w.fresh_instance()}/delete/",
              page(member=MOVED, viewer=403, other=404, system=MOVED))],
    "nodes/": [Check("GET", fixed("/nodes/"), page(**SYSTEM_ONLY))],
    "nodes/<str:name>/": [Check("GET", fixed("/nodes/{node}/"), page(**SYSTEM_ONLY))],
    # The token and its command are the page itself (200), shown once.
    "nodes/-/join-tokens/": [Check("POST", fixed("/nodes/-/join-tokens/"),
                                   page(**SYSTEM_ONLY))],
    "nodes/-/join-tokens/<str:token_id>/revoke/": [
        Check("POST", fixed("/nodes/-/join-tokens/0123456789ab/revoke/"),
              page(**{**SYSTEM_ONLY, "system": 404}))],
    # The node is online: past the role check, the refusal is a message on its page.
    "nodes/<str:name>/delete/": [Check("POST", fixed("/nodes/{node}/delete/"),
                                       page(**{**SYSTEM_ONLY, "system": MOVED}))],
    "nodes/<str:name>/maintenance/": [Check("POST", fixed("/nodes/{node}/maintenance/"),
                                            page(**{**SYSTEM_ONLY, "system": MOVED}))],
    # The instance page's buttons and small forms answer htmx with a toast (200), also when
    # the service refuses (the instance is not built); viewers get 403, outsiders 404.
    "instances/<uuid:uuid>/power/<str:action>/": [
        Check("POST", fixed("/instances/{inst}/power/pause/"), page(**OPERATE_A), htmx=True)],
    # A form's refusal is the form again, with the reason beside the field (400).
    "instances/<uuid:uuid>/snapshot/": [
        Check("POST", fixed("/instances/{inst}/snapshot/"),
              page(member=400, viewer=403, other=404, system=400), htmx=True)],
    "instances/<uuid:uuid>/metadata/": [
        Check("POST", fixed("/instances/{inst}/metadata/"), page(**OPERATE_A), htmx=True,
              body=lambda w, who: {"key": "shade", "value": "dark"})],
    "instances/<uuid:uuid>/metadata/<str:key>/delete/": [
        Check("POST", lambda w, who: _with_instance_metadata(w).removeprefix("/api") + "/delete/",
              page(**OPERATE_A), htmx=True)],
    "images/": [Check("GET", fixed("/images/"),
                      page(member=200, viewer=200, other=200, system=200))],
    # B's admin works in B, where they may add images (the URL is then refused: a toast).
    "images/cache/": [
        # Those who may add images hear why this URL is refused, beside the field (400).
        Check("POST", fixed("/images/cache/"), page(member=400, viewer=403, other=400,
                                                    system=400), htmx=True,
              body=lambda w, who: {"url": "http://169.254.169.254/x"})],
    "images/<uuid:uuid>/": [Check("GET", fixed("/images/{image}/"), page(**READ_A))],
    "images/<uuid:uuid>/download/": [
        Check("GET", fixed("/images/{stored}/download/"), page(**READ_A_ON_NODE))],
    "images/blobs/<uuid:uuid>/download/": [
        Check("GET", fixed("/images/blobs/{blob}/download/"), page(**READ_A_ON_NODE))],
    # The upload form's calls (JSON). Each person starts one in the namespace they work in
    # (B's admin in B); A's uploads are A's.
    "images/uploads/": [
        Check("POST", fixed("/images/uploads/"),
              page(member=200, viewer=403, other=200, system=200))],
    "images/uploads/<uuid:uuid>/": [
        Check("GET", fixed("/images/uploads/{upload}/"), page(**READ_A_ON_NODE))],
    "images/uploads/<uuid:uuid>/chunk/": [
        Check("POST", fixed("/images/uploads/{upload}/chunk/"), page(**OPERATE_A_ON_NODE))],
    # No name given: refused past the role checks.
    "images/uploads/<uuid:uuid>/artifact/": [
        Check("POST", lambda w, who: f"/images/uploads/{w.fresh_upload()}/artifact/",
              page(member=400, viewer=403, other=404, system=400))],
    "images/<uuid:uuid>/delete/": [
        Check("POST", lambda w, who: f"/images/{w.fresh_image()}/delete/",
              page(member=MOVED, viewer=403, other=404, system=MOVED))],
    "keypairs/": [
        Check("GET", fixed("/keypairs/"), page(member=200, viewer=200, other=200, system=200)),
        # A key that is not one: the form comes back with the error (400).
        Check("POST", fixed("/keypairs/"), page(member=400, viewer=403, other=400, system=400),
              body=lambda w, who: {"name": "k", "public_key": "nope"}),
    ],
    "keypairs/<uuid:uuid>/delete/": [
        Check("POST", lambda w, who: f"/keypairs/{w.fresh_keypair()}/delete/",
              page(member=MOVED, viewer=403, other=404, system=MOVED))],
    "networks/": [Check("GET", fixed("/networks/"),
                        page(member=200, viewer=200, other=200, system=200))],
    "networks/new/": [Check("GET", fixed("/networks/new/"),
                            page(member=200, viewer=403, other=200, system=200))],
    "networks/<uuid:uuid>/": [Check("GET", fixed("/networks/{net}/"), page(**READ_A))],
    "networks/<uuid:uuid>/delete/": [
        Check("POST", lambda w, who: f"/networks/{w.fresh_network()}/delete/",
              page(member=MOVED, viewer=403, other=404, system=MOVED))],
    "networks/instance/<uuid:uuid>/interfaces/": [
        Check("GET", fixed("/networks/instance/{inst}/interfaces/"), page(**READ_A),
              htmx=True)],
    # Adding and removing NICs answer with the section again (200); viewers get 403.
    "networks/instance/<uuid:uuid>/interfaces/add/": [
        Check("POST", fixed("/networks/instance/{inst}/interfaces/add/"), page(**OPERATE_A),
              htmx=True, body=lambda w, who: {"network": w.network_a})],
    "networks/instance/<uuid:uuid>/interfaces/<uuid:interface>/remove/": [
        Check("POST", lambda w, who: _hot_plugged(w).replace("/api/instances/",
                                                              "/networks/instance/")
              + "/remove/", page(**OPERATE_A), htmx=True)],
    # The float buttons answer with the section again (200), saying why the service
    # refused (the interface has no address); viewers get 403, outsiders 404.
    **{f"networks/interface/<uuid:uuid>/{verb}/": [
        Check("POST", fixed(f"/networks/interface/{{iface}}/{verb}/"), page(**OPERATE_A),
              htmx=True)]
       for verb in ("float", "defloat")},
    "networks/interface/<uuid:uuid>/security-groups/": [
        Check("POST", fixed("/networks/interface/{iface}/security-groups/"), page(**OPERATE_A),
              htmx=True, body=lambda w, who: {"security_groups": []})],
    # Each works in their own namespace: B's admin may make groups in B (the name
    # is then refused: the form again, 400).
    "security-groups/": [
        Check("GET", fixed("/security-groups/"),
              page(member=200, viewer=200, other=200, system=200)),
        Check("POST", fixed("/security-groups/"),
              page(member=400, viewer=403, other=400, system=400),
              body=lambda w, who: {"group-name": "no/such"}),
    ],
    "security-groups/<uuid:uuid>/": [
        Check("GET", fixed("/security-groups/{sg}/"), page(**READ_A))],
    "security-groups/<uuid:uuid>/rules/": [
        Check("POST", fixed("/security-groups/{sg}/rules/"),
              page(member=400, viewer=403, other=404, system=400),
              body=lambda w, who: {"direction": "ingress", "protocol": "tcp", "ports": "x",
                                   "remote": "any"})],
    "security-groups/<uuid:uuid>/rules/<uuid:rule_uuid>/remove/": [
        Check("POST", lambda w, who: f"/security-groups/{w.secgroup_a}/rules/{w.fresh_rule()}"
                                     "/remove/", page(**OPERATE_A), htmx=True)],
    "security-groups/<uuid:uuid>/delete/": [
        Check("POST", lambda w, who: f"/security-groups/{w.fresh_secgroup()}/delete/",
              page(member=MOVED, viewer=403, other=404, system=MOVED))],
    "security-groups/address-sets/": [
        Check("POST", fixed("/security-groups/address-sets/"),
              page(member=400, viewer=403, other=400, system=400),
              body=lambda w, who: {"set-name": "x", "set-cidrs": "nope"})],
    "security-groups/address-sets/<uuid:uuid>/": [
        Check("GET", fixed("/security-groups/address-sets/{aset}/"), page(**READ_A)),
        Check("POST", fixed("/security-groups/address-sets/{aset}/"),
              page(member=MOVED, viewer=403, other=404, system=MOVED),
              body=lambda w, who: {"cidrs": "198.51.100.0/24"}),
    ],
    "security-groups/address-sets/<uuid:uuid>/delete/": [
        Check("POST", lambda w, who: f"/security-groups/address-sets/{w.fresh_address_set()}"
                                     "/delete/",
              page(member=MOVED, viewer=403, other=404, system=MOVED))],
    # Readers get a ticket (read-only for viewers) once the instance runs; this one does not.
    "instances/<uuid:uuid>/console/<str:kind>/ticket": [
        Check("POST", fixed("/instances/{inst}/console/serial/ticket"),
              page(member=409, viewer=409, other=404, system=409))],
    "instances/<uuid:uuid>/console/vnc/": [
        Check("GET", fixed("/instances/{inst}/console/vnc/"), page(**READ_A))],
    "consoles/": [Check("GET", fixed("/consoles/"), page(**SYSTEM_ONLY))],
    "consoles/<str:session_id>/end": [
        Check("POST", fixed("/consoles/no-such-session/end"),
              page(member=403, viewer=403, other=403, system=MOVED))],
    "manage/": [Check("GET", fixed("/manage/"),
                      page(member=403, viewer=403, other=MOVED, system=MOVED))],
    "manage/namespaces/": [
        Check("GET", fixed("/manage/namespaces/"),
              page(member=403, viewer=403, other=200, system=200)),
        Check("POST", fixed("/manage/namespaces/"),
              page(member=403, viewer=403, other=403, system=MOVED),
              body=lambda w, who: {"name": w.unique("made")}),
    ],
    "manage/namespaces/<str:namespace>/": [
        Check("GET", fixed("/manage/namespaces/{a}/"),
              page(member=403, viewer=403, other=404, system=200))],
    "manage/namespaces/<str:namespace>/quota/": [
        Check("POST", fixed("/manage/namespaces/{a}/quota/"),
              page(member=403, viewer=403, other=404, system=MOVED),
              body=lambda w, who: {"snapshot_bytes": ""})],
    "manage/namespaces/<str:namespace>/delete/": [
        Check("POST", lambda w, who: f"/manage/namespaces/{fresh_ns_for_system(w, who)}/delete/",
              page(member=403, viewer=403, other=404, system=MOVED))],
    "manage/namespaces/<str:namespace>/members/": [
        Check("GET", fixed("/manage/namespaces/{a}/members/"),
              page(member=403, viewer=403, other=404, system=200), htmx=True),
        Check("POST", fixed("/manage/namespaces/{a}/members/"),
              page(member=403, viewer=403, other=404, system=200), htmx=True,
              body=lambda w, who: {"username": "spare-" + w.ns_a, "role": "viewer"}),
    ],
    "manage/namespaces/<str:namespace>/members/<int:user_id>/remove/": [
        Check("POST", lambda w, who: _spare_member_of_a(w),
              page(member=403, viewer=403, other=404, system=200), htmx=True)],
    "manage/namespaces/<str:namespace>/keys/": [
        Check("POST", fixed("/manage/namespaces/{a}/keys/"),
              page(member=403, viewer=403, other=404, system=200),
              body=lambda w, who: {"key_name": w.unique("pk")})],
    "manage/namespaces/<str:namespace>/keys/<str:key_name>/rotate/": [
        Check("POST", lambda w, who: f"/manage/namespaces/{w.ns_a}/keys/{w.fresh_key()}/rotate/",
              page(member=403, viewer=403, other=404, system=200))],
    "manage/namespaces/<str:namespace>/keys/<str:key_name>/delete/": [
        Check("POST", lambda w, who: f"/manage/namespaces/{w.ns_a}/keys/{w.fresh_key()}/delete/",
              page(member=403, viewer=403, other=404, system=MOVED))],
    "manage/namespaces/<str:namespace>/trust/": [
        Check("POST", fixed("/manage/namespaces/{a}/trust/"),
              page(member=403, viewer=403, other=404, system=MOVED),
              body=lambda w, who: {"external_namespace": w.fresh_namespace()})],
    "manage/namespaces/<str:namespace>/trust/<str:other>/remove/": [
        Check("POST", lambda w, who: f"/manage/namespaces/{w.ns_a}/trust/"
                                     f"{w.fresh_namespace()}/remove/",
              page(member=403, viewer=403, other=404, system=MOVED))],
    "manage/people/": [
        Check("GET", fixed("/manage/people/"), page(**SYSTEM_ONLY)),
        # No password given: the generated one is shown on the answer itself (200).
        Check("POST", fixed("/manage/people/"),
              page(member=403, viewer=403, other=403, system=200),
              body=lambda w, who: {"username": w.unique("u"), "password": "", "role": "member"}),
    ],
    "manage/people/<int:user_id>/": [
        Check("GET", fixed("/manage/people/{member}/"), page(**SYSTEM_ONLY))],
    "manage/people/<int:user_id>/active/": [
        Check("POST", fixed("/manage/people/{spare}/active/"),
              page(member=403, viewer=403, other=403, system=MOVED),
              body=lambda w, who: {"active": "1"})],
    "manage/people/<int:user_id>/delete/": [
        Check("POST", lambda w, who: f"/manage/people/{w.fresh_person()}/delete/",
              page(member=403, viewer=403, other=403, system=MOVED))],
    "manage/people/<int:user_id>/password/": [
        Check("POST", fixed("/manage/people/{spare}/password/"),
              page(member=403, viewer=403, other=403, system=200))],
    "manage/people/<int:user_id>/memberships/": [
        Check("POST", fixed("/manage/people/{spare}/memberships/"),
              page(member=403, viewer=403, other=403, system=MOVED),
              body=lambda w, who: {"namespace": w.ns_b, "role": "viewer"})],
    "manage/people/<int:user_id>/memberships/<str:namespace>/remove/": [
        Check("POST", fixed("/manage/people/{spare}/memberships/{b}/remove/"),
              page(member=403, viewer=403, other=403, system=MOVED))],
    "manage/audit/": [Check("GET", fixed("/manage/audit/"),
                            page(member=403, viewer=403, other=200, system=200))],
}

# Websockets: what each caller gets when opening the route from the portal's
# own origin ("rows" = accepted and sent the instance table; "refused" = the
# handshake is answered 403).
WEBSOCKETS: dict[str, dict[str, str]] = {
    "ws/instances/": {MEMBER: "rows", VIEWER: "rows", OTHER: "rows", SYSTEM: "rows",
                      ANON: "refused", EXPIRED: "refused", REVOKED: "refused"},
    # "ticket": accepted, but nothing happens without a one-time ticket (a made-up one is
    # refused with 4003); tests/integration/test_consoles.py tries real ones.
    "ws/consoles/<str:kind>/<uuid:uuid>/": {
        MEMBER: "ticket", VIEWER: "ticket", OTHER: "ticket", SYSTEM: "ticket",
        ANON: "refused", EXPIRED: "refused", REVOKED: "refused"},
}

# Websockets of one object's page: accepted ones first send that page's live parts.
_SEES_A = {MEMBER: "sent", VIEWER: "sent", OTHER: "refused", SYSTEM: "sent",
           ANON: "refused", EXPIRED: "refused", REVOKED: "refused"}
WEBSOCKETS.update({
    "ws/instances/<uuid:uuid>/": _SEES_A,
    "ws/images/": {**_SEES_A, OTHER: "sent"},
    "ws/images/<uuid:uuid>/": _SEES_A,
    "ws/networks/": {**_SEES_A, OTHER: "sent"},
    "ws/networks/<uuid:uuid>/": _SEES_A,
    "ws/secgroups/": {**_SEES_A, OTHER: "sent"},
    "ws/secgroups/<uuid:uuid>/": _SEES_A,
    "ws/address-sets/<uuid:uuid>/": _SEES_A,
    "ws/nodes/<str:name>/events/": {**dict.fromkeys(EVERYONE, "refused"), SYSTEM: "sent"},
    "ws/dashboard/": {**dict.fromkeys(EVERYONE, "sent"),
                      **dict.fromkeys(NO_CREDENTIALS, "refused")},
    # Graphs' live samples: the first message says whether the node can be followed.
    "ws/usage/instances/<uuid:uuid>/": _SEES_A,
    "ws/usage/nodes/<str:name>/": {**dict.fromkeys(EVERYONE, "refused"), SYSTEM: "sent"},
    "ws/quotas/<str:namespace>/": _SEES_A,
})
WEBSOCKET_PATHS: dict[str, Callable[[World], str]] = {
    "ws/instances/<uuid:uuid>/": lambda w: f"/ws/instances/{w.instance_a}/",
    "ws/images/<uuid:uuid>/": lambda w: f"/ws/images/{w.image_a}/",
    "ws/networks/<uuid:uuid>/": lambda w: f"/ws/networks/{w.network_a}/",
    "ws/secgroups/<uuid:uuid>/": lambda w: f"/ws/secgroups/{w.secgroup_a}/",
    "ws/address-sets/<uuid:uuid>/": lambda w: f"/ws/address-sets/{w.address_set_a}/",
    "ws/nodes/<str:name>/events/": lambda w: f"/ws/nodes/{w.node}/events/",
    "ws/usage/instances/<uuid:uuid>/": lambda w: f"/ws/usage/instances/{w.instance_a}/",
    "ws/usage/nodes/<str:name>/": lambda w: f"/ws/usage/nodes/{w.node}/",
    "ws/consoles/<str:kind>/<uuid:uuid>/": lambda w: f"/ws/consoles/serial/{w.instance_a}/",
    "ws/quotas/<str:namespace>/": lambda w: f"/ws/quotas/{w.ns_a}/",
}
# Lists every caller may open: what of A's they must hold only for those who may see A.
WEBSOCKET_LIST_OF_A: dict[str, Callable[[World], str]] = {
    "ws/images/": lambda w: w.image_a,
    "ws/networks/": lambda w: w.network_a,
    "ws/secgroups/": lambda w: w.secgroup_a,
}
WEBSOCKET_FIRST: dict[str, str] = {
    "ws/instances/<uuid:uuid>/": 'id="section-power"',
    "ws/images/": 'id="image-rows"',
    "ws/images/<uuid:uuid>/": 'id="image-nodes"',
    "ws/networks/": 'id="network-rows"',
    "ws/networks/<uuid:uuid>/": 'id="network-overview"',
    "ws/secgroups/": 'id="secgroup-rows"',
    "ws/secgroups/<uuid:uuid>/": 'id="secgroup-overview"',
    "ws/address-sets/<uuid:uuid>/": 'id="event-rows"',
    "ws/nodes/<str:name>/events/": 'id="event-rows"',
    "ws/dashboard/": 'id="dash-summary"',
    "ws/usage/instances/<uuid:uuid>/": '"type": "state"',
    "ws/usage/nodes/<str:name>/": '"type": "state"',
    "ws/quotas/<str:namespace>/": 'id="quota-lines"',
}


def _spare_member_of_a(w: World) -> str:
    """The URL removing the spare person from A, having first made them a member."""
    added = _post(w, SYSTEM, f"/manage/namespaces/{w.ns_a}/members/",
                  {"username": "spare-" + w.ns_a, "role": "viewer"}, htmx=True)
    assert added.status_code == 200
    return f"/manage/namespaces/{w.ns_a}/members/{w.spare_user}/remove/"


def _with_instance_metadata(w: World) -> str:
    """The API URL of a metadata key just set on A's instance."""
    key = w.unique("tag")
    response = w.cloud.api().request("PUT", f"/instances/{w.instance_a}/metadata/{key}",
                                     {"value": 1})
    assert response.status_code == 200, response.text
    return f"/api/instances/{w.instance_a}/metadata/{key}"


def _with_node_metadata(w: World) -> str:
    key = w.unique("tag")
    response = w.cloud.api().request("PUT", f"/nodes/{w.node}/metadata/{key}", {"value": 1})
    assert response.status_code == 200, response.text
    return f"/api/nodes/{w.node}/metadata/{key}"


def _hot_plugged(w: World) -> str:
    """The API URL of a NIC just added to a fresh instance of A."""
    instance = w.fresh_instance()
    response = w.cloud.api().post(f"/instances/{instance}/interfaces",
                                  {"network": {"network_uuid": w.network_a}})
    assert response.status_code == 200, response.text
    return f"/api/instances/{instance}/interfaces/{response.json()['uuid']}"


def _routed(w: World, who: str) -> str:
    """The API URL of an address just routed to A's network, for a caller
    who may unroute it (the pool is small: no network node here gives
    unrouted addresses back); the others are refused before it matters."""
    if who not in (MEMBER, SYSTEM):
        return f"/api/networks/{w.network_a}/route/192.0.2.9"
    response = w.cloud.api().post(f"/networks/{w.network_a}/route")
    assert response.status_code == 200, response.text
    return f"/api/networks/{w.network_a}/route/{response.json()}"


def _with_network_metadata(w: World) -> str:
    """The API URL of a metadata key just set on A's network."""
    key = w.unique("tag")
    response = w.cloud.api().request("PUT", f"/networks/{w.network_a}/metadata/{key}",
                                     {"value": 1})
    assert response.status_code == 200, response.text
    return f"/api/networks/{w.network_a}/metadata/{key}"


def _with_object_metadata(w: World, things: str, uuid: str) -> str:
    """The API URL of a metadata key just set on one of A's artifacts or blobs."""
    key = w.unique("tag")
    response = w.cloud.api().request("PUT", f"/{things}/{uuid}/metadata/{key}", {"value": 1})
    assert response.status_code == 200, response.text
    return f"/api/{things}/{uuid}/metadata/{key}"


def _sha512_of_blob(w: World) -> str:
    return w.cloud.api().get(f"/blobs/{w.blob_a}").json()["sha512"]
def _with_secgroup_metadata(w: World) -> str:
    """The API URL of a metadata key just set on A's security group."""
    key = w.unique("tag")
    response = w.cloud.api().request("PUT", f"/security-groups/{w.secgroup_a}/metadata/{key}",
                                     {"value": 1})
    assert response.status_code == 200, response.text
    return f"/api/security-groups/{w.secgroup_a}/metadata/{key}"


def _with_metadata(w: World, key: str) -> str:
    response = w.cloud.api().request("PUT", f"/auth/namespaces/{w.ns_a}/metadata/{key}",
                                     {"value": 1})
    assert response.status_code == 200
    return f"/api/auth/namespaces/{w.ns_a}/metadata/{key}"


# --- discovering routes ---------------------------------------------------------------------


def django_routes() -> list[str]:
    from django.urls import URLResolver, get_resolver

    def walk(patterns: list[Any], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    return sorted(set(walk(get_resolver().url_patterns, "")))


def websocket_routes() -> list[str]:
    from portal.routing import websocket_urlpatterns

    return sorted(str(pattern.pattern) for pattern in websocket_urlpatterns)


def test_every_route_is_in_the_matrix() -> None:
    routes = django_routes()
    missing = [route for route in routes if route not in MATRIX]
    assert not missing, (
        "these routes have no entry in the authorization matrix (tests/fast/"
        f"test_authorization_matrix.py): {missing}")
    stale = [route for route in MATRIX if route not in routes]
    assert not stale, f"the matrix names routes that no longer exist: {stale}"
    ws_missing = [route for route in websocket_routes() if route not in WEBSOCKETS]
    assert not ws_missing, f"these websocket routes have no entry in WEBSOCKETS: {ws_missing}"
    for route, checks in MATRIX.items():
        for check in checks:
            assert set(check.expect) == set(EVERYONE), f"{route} {check.method}: not every caller"


# --- the world the matrix runs in ---------------------------------------------------------


@pytest.fixture(scope="module")
def world(module_portal: InProcessPortal) -> World:
    cloud = module_portal
    api = cloud.api()
    agent = FakeAgent(cloud).register()
    node = agent.node
    suffix = secrets.token_hex(3)
    ns_a, ns_b = f"owner-{suffix}", f"other-{suffix}"
    for ns in (ns_a, ns_b):
        assert api.post("/auth/namespaces", {"namespace": ns}).status_code == 200
        # The matrix makes a fresh object per check; a deleted network counts
        # until an agent has removed it, so the default limits would refuse
        # the later checks in an order-dependent way. Quotas have their own tests.
        unlimited = {kind: None for kind in quotas.KINDS}
        assert api.put(f"/auth/namespaces/{ns}/quota", unlimited).status_code == 200
    callers = {
        MEMBER: cloud.person(f"member-{suffix}", {ns_a: "member"}),
        VIEWER: cloud.person(f"viewer-{suffix}", {ns_a: "viewer"}),
        OTHER: cloud.person(f"badmin-{suffix}", {ns_b: "admin"}),
        SYSTEM: cloud.person(f"sysadmin-{suffix}", {"system": "admin"}),
        "spare": cloud.person(f"spare-{ns_a}"),
    }
    member = callers[MEMBER].user
    tokens = {who: personal_token(callers[who].user, name, namespace) for who, name, namespace
              in [(MEMBER, "member", ns_a), (VIEWER, "viewer", ns_a), (OTHER, "other", ns_b),
                  (SYSTEM, "system", "system")]}
    tokens[EXPIRED] = personal_token(member, "expired", days=-1)
    personal_token(member, "spare", days=3)
    # A key's token, then the key deleted: the token must be dead.
    secret = secrets.token_urlsafe(16)
    assert api.post(f"/auth/namespaces/{ns_a}/keys",
                    {"key_name": "doomed", "key": secret}).status_code == 200
    tokens[REVOKED] = cloud.api(ns_a, secret).token
    assert api.delete(f"/auth/namespaces/{ns_a}/keys/doomed").status_code == 200

    sessions = {who: callers[who].browser for who in (MEMBER, VIEWER, OTHER, SYSTEM)}
    for who in NO_CREDENTIALS:
        # A bearer token on every request of theirs: it means nothing to a page.
        sessions[who] = cloud.browser(
            headers={"Authorization": f"Bearer {tokens[who]}"} if who in tokens else None)
    spare_token_id = _token_id(sessions[MEMBER], "spare")
    users = {who: person.user_id for who, person in callers.items()}
    world = World(cloud=cloud, node=node, ns_a=ns_a, ns_b=ns_b,
                  instance_a=put_instance(cloud, ns_a, "a1"), users=users, tokens=tokens,
                  sessions=sessions, spare_token_id=spare_token_id, spare_user=users["spare"])
    world.image_a = world.fresh_image()
    # An uploaded file of A: its records, and its node's report of the bytes.
    world.stored_a, world.blob_a = put_uploaded(cloud, ns_a, "matrix-file", agent.node,
                                                MATRIX_BYTES)
    agent.report_blob(world.blob_a, MATRIX_BYTES)
    world.upload_a = world.fresh_upload()
    world.keypair_a = world.fresh_keypair()
    world.network_a = world.fresh_network()
    agent.report_network(world.network_a)  # built by its network node
    world.interface_a = put_interface(cloud, ns_a, world.instance_a, world.network_a)
    world.secgroup_a = world.fresh_secgroup()
    world.rule_a = api.get(f"/security-groups/{world.secgroup_a}").json()["rules"][0]["uuid"]
    world.address_set_a = world.fresh_address_set()
    # Each person works in their own namespace in the pages.
    for who, ns in ((MEMBER, ns_a), (VIEWER, ns_a), (OTHER, ns_b), (SYSTEM, "system")):
        _post(world, who, "/namespace/", {"namespace": ns})
    return world


def _token_id(browser: Browser, name: str) -> int:
    page_text = browser.get("/account/tokens/").text
    row = re.search(rf'<tr id="token-(\d+)">\s*<td[^>]*>{name}</td>', page_text)
    assert row, f"token {name} is not on its owner's page"
    return int(row.group(1))


def _post(world: World, who: str, path: str, data: dict[str, Any],
          htmx: bool = False) -> Reply:
    return world.sessions[who].post(path, data, htmx=htmx)


def _outcome(response: Reply) -> int | str:
    if response.status_code in (301, 302):
        return LOGIN if "/login/" in response.headers.get("Location", "") else MOVED
    return response.status_code


def _call(world: World, route: str, check: Check, who: str) -> Reply:
    path = check.url(world, who)
    body = check.body(world, who) if check.body else None
    if route.startswith("api"):
        api = world.cloud.api_with_token(world.tokens.get(who, ""))
        if who not in world.tokens:  # no Authorization header at all
            return api.raw(check.method, path.removeprefix("/api"), _json(body))
        return api.request(check.method, path.removeprefix("/api"), body)
    if check.method == "GET":
        return world.sessions[who].get(path, htmx=check.htmx)
    return _post(world, who, path, body or {}, htmx=check.htmx)


def _json(body: Any) -> str:
    return "" if body is None else json.dumps(body)


@pytest.mark.parametrize("route", sorted(MATRIX))
def test_route_answers_each_caller_as_the_matrix_says(world: World, route: str) -> None:
    failures = []
    for check in MATRIX[route]:
        for who in EVERYONE:
            response = _call(world, route, check, who)
            got = _outcome(response)
            if got != check.expect[who]:
                failures.append(f"{check.method} {route} as {who}: expected "
                                f"{check.expect[who]}, got {got} ({response.text[:200]!r})")
    assert not failures, "\n".join(failures)


# --- websockets ---------------------------------------------------------------------------


def open_socket(world: World, who: str, path: str = "/ws/instances/",
                origin: str | None = None) -> Socket:
    """The socket as the caller's browser opens it: their session cookie, and
    for callers without a session, their bearer token (which must not count)."""
    headers = {}
    if who in world.tokens and who in NO_CREDENTIALS:
        headers["Authorization"] = f"Bearer {world.tokens[who]}"
    return world.sessions[who].socket(path, origin=origin, headers=headers)


@pytest.mark.parametrize("route", sorted(WEBSOCKETS))
def test_websocket_answers_each_caller_as_the_matrix_says(world: World, route: str) -> None:
    for who in EVERYONE:
        expected = WEBSOCKETS[route][who]
        # Everyone asks to work in A (B's admin can't, and stays in B).
        if who not in NO_CREDENTIALS:
            _post(world, who, "/namespace/", {"namespace": world.ns_a})
        path = WEBSOCKET_PATHS.get(route, lambda w, route=route: "/" + route)(world)
        try:
            ws = open_socket(world, who, path)
        except Refused:
            assert expected == "refused", f"{route} as {who}: refused, expected {expected}"
            continue
        if expected == "ticket":
            with ws, pytest.raises(Closed) as closed:
                ws.send(json.dumps({"ticket": secrets.token_urlsafe(32)}))
                ws.recv(timeout=10)
            assert closed.value.code == 4003, who
            continue
        with ws:
            first = ws.recv(timeout=10)
        if expected == "sent":
            assert WEBSOCKET_FIRST[route] in first, f"{route} as {who}: {first[:200]!r}"
            if route in WEBSOCKET_LIST_OF_A:
                shows_a = WEBSOCKET_LIST_OF_A[route](world) in first
                assert shows_a == (who in (MEMBER, VIEWER, SYSTEM)), f"{route} as {who}"
            continue
        assert expected == "rows", f"{route} as {who}: expected {expected}, got a message"
        assert 'id="instance-rows"' in first
        # The table only ever holds what the caller may see.
        assert (world.instance_a in first) == (who in (MEMBER, VIEWER, SYSTEM)), who
        # Viewers get rows without the buttons that change things.
        if who in (MEMBER, VIEWER):
            assert ('data-confirm="delete-dialog"' in first) == (who == MEMBER), who


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1:{other}",  # another service on this host
    "http://localhost:{other}",
    "http://127.0.0.1.:{port}",  # trailing dot
    "https://127.0.0.1:{port}",  # another scheme
    "http://evil.example",
    "null",
    None,  # no Origin at all
])
def test_websockets_refuse_other_origins(world: World, origin: str | None) -> None:
    from tests.support.cloud import free_port

    value = "" if origin is None else origin.format(other=free_port(), port=world.cloud.port)
    with pytest.raises(Refused):
        open_socket(world, SYSTEM, origin=value)
    # The same socket from the portal's own origin is accepted.
    with open_socket(world, SYSTEM) as ws:
        assert 'id="instance-rows"' in ws.recv(timeout=10)
