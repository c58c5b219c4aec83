"""Fuzzing every route of the API from its own description (OpenAPI,
portal.api.openapi), with Hypothesis: bodies drawn from each route's
declared body schema and from any JSON at all (or none, or not JSON),
path parameters from the real objects of a small world and from random
text. For every request:

- no server error: the in-process portal lets a view's exception out, so a
  500 fails the test with its traceback; 503 and 507 only where the
  description declares them;
- the answer matches its own schema (the success shape, or {error, status});
- a refusal (4xx) leaves etcd exactly as it was: nothing half-made.

Bounded: SFCLOUD_FUZZ_EXAMPLES examples per route and method (8 in `make
test`, more under `make soak`); the counts are printed as EVIDENCE lines.
Hypothesis prints the failing request, shrunk, and how to replay it.
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import jsonschema
import pytest
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloudstate.settings import read
from portal.api import openapi, shapes
from portal.cloud import keypairs, store
from portal.cloud.errors import BadRequest
from tests.support.evidence import record
from tests.support.fakeagent import FakeAgent
from tests.support.inprocess import InProcessPortal
from tests.support.objects import PUBLIC_KEY, put_uploaded
from tests.support.schemagen import strategy

pytestmark = pytest.mark.stress
EXAMPLES = read("SFCLOUD_FUZZ_EXAMPLES")
DOCUMENT = openapi.document()
COMPONENTS = DOCUMENT["components"]["schemas"]
OPERATIONS = sorted((item_path, method) for item_path, item in DOCUMENT["paths"].items()
                    for method in item)
TALLY: dict[str, Counter[int]] = {}


def inline(schema: Any) -> Any:
    """The schema with its references to components written out."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return inline(COMPONENTS[schema["$ref"].rsplit("/", 1)[1]])
        return {key: inline(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inline(value) for value in schema]
    return schema


# --- the world the routes are tried on --------------------------------------------------------


@dataclass
class World:
    portal: InProcessPortal
    refs: dict[str, list[str]] = field(default_factory=dict)

    def etcd(self) -> dict[str, bytes]:
        kvs, _ = self.portal.etcd_call(lambda etcd: etcd.get_prefix(self.portal.keys.root))
        return {kv.key: kv.value for kv in kvs}


@pytest.fixture
def world(portal: InProcessPortal, agent: FakeAgent, demo_image: str) -> World:
    """One of each object, of the system namespace (the caller), in the
    states the routes care about: a running instance with a NIC on a
    network, a keypair, an artifact with a blob a node holds, a label, an
    upload, a second namespace with a spare key."""
    api = portal.api()

    def ok(response: Any) -> Any:
        assert response.status_code == 200, response.text
        return response.json()

    network = ok(api.post("/networks", {"name": "fuzznet", "netblock": "10.60.0.0/24",
                                        "provide_nat": False}))
    agent.report_network(network["uuid"])
    instance = ok(api.post("/instances", {
        "name": "fuzzvm", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
        "network": [{"network_uuid": network["uuid"]}], "metadata": {"colour": "blue"}}))
    agent.report_instance(instance["uuid"], state="created", power_state="on")
    data = secrets.token_bytes(64)
    artifact, blob = put_uploaded(portal, "system", "fuzzimg", agent.node, data)
    agent.report_blob(blob, data)
    keypair = ok(api.post("/keypairs", {"name": "fuzzkey", "public_key": PUBLIC_KEY}))
    ok(api.post("/label/system/fuzzlabel", {"blob_uuid": blob}))
    upload = ok(api.post("/upload", {}))
    ok(api.post("/auth/namespaces", {"namespace": "fuzzns", "key_name": "spare",
                                     "key": secrets.token_urlsafe(16)}))
    blob_shown = ok(api.get(f"/blobs/{blob}"))
    group = ok(api.post("/security-groups", {"name": "fuzzsg", "rules": [
        {"direction": "ingress", "protocol": "tcp", "ports": "22"}]}))
    ok(api.post("/address-sets", {"name": "fuzzset", "cidrs": ["192.0.2.0/24"]}))
    join_token = ok(api.post("/join-tokens", {"etcd": True}))
    any_ref = [instance["uuid"], "fuzzvm", network["uuid"], "fuzznet", artifact, "fuzzimg",
               blob, keypair["uuid"], upload["uuid"], agent.node, "floating", demo_image,
               group["uuid"], "fuzzsg", "fuzzset"]
    return World(portal, {
        "ref": any_ref,
        "uuid": [instance["interfaces"][0]["uuid"]],
        "rule_uuid": [group["rules"][0]["uuid"]],
        "token_id": [join_token["id"]],
        # Never the system namespace or its key: the fuzzer's own credentials.
        "namespace": ["fuzzns"],
        "key_name": ["spare"],
        "key": ["colour"],
        "index": ["1", "2"],
        "algorithm": ["sha512"],
        "digest": [blob_shown["sha512"]],
        "offset": ["0", "16"],
        "name": ["system/fuzzlabel", "fuzzlabel", "fuzzimg"],
        "other": ["fuzzns"],
        "address": ["10.60.0.1", "10.60.0.7", "192.0.2.7"],
    })


# --- what is sent -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
PATH_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                    min_size=1, max_size=40)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    data: bytes


def requests_for(world: World, item_path: str, method: str) -> st.SearchStrategy[Request]:
    op = DOCUMENT["paths"][item_path][method]
    parameters = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
    # A "/" in a one-segment parameter makes a path no route matches: not
    # this route's input (only a label's name, a <path:...>, may hold one).
    slashes = item_path.startswith("/label/")
    values = {name: st.sampled_from([r for r in world.refs[name] if slashes or "/" not in r])
              | (PATH_TEXT if slashes else PATH_TEXT.filter(lambda t: "/" not in t))
              for name in parameters}
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        declared = inline(content["application/json"]["schema"])
        body = st.one_of(strategy(declared).map(json.dumps),
                         JSON_VALUES.map(json.dumps),
                         st.just(""), st.text(max_size=30))
    elif content:
        body = st.binary(max_size=64).map(lambda raw: raw.decode("latin-1"))
    else:
        body = st.just("") | JSON_VALUES.map(json.dumps)

    @st.composite
    def build(draw: Any) -> Request:
        filled = item_path
        for name in parameters:
            value = draw(values[name])
            filled = filled.replace("{" + name + "}",
                                    quote(value, safe="/" if slashes else ""))
        filled = "" if filled == "/" else filled
        # Only what reaches this route is its input (a value no route's
        # pattern matches, such as a newline in a label's name, is a 404 of
        # the URLconf's, not of this route).
        assume(_reaches(filled, item_path))
        return Request(method.upper(), filled, draw(body).encode("utf-8", "surrogatepass"))

    return build()


def _reaches(filled: str, item_path: str) -> bool:
    try:
        match = resolve("/api" + unquote(filled))
    except Resolver404:
        return False
    return item_path in _ROUTES_OF_VIEW.get(match.func, set())


# A view may serve several routes (/readyz and /healthz).
_ROUTES_OF_VIEW: dict[Any, set[str]] = {}
for _route in openapi.routes():
    _ROUTES_OF_VIEW.setdefault(_route.view, set()).add(_route.path)


# --- what must hold -----------------------------------------------------------------------------


def check_answer(item_path: str, method: str, status: int, content: bytes,
                 headers: Any) -> None:
    op = DOCUMENT["paths"][item_path][method]
    declared = "4XX" if 400 <= status < 500 else str(status)
    assert declared in op["responses"], \
        f"{method.upper()} {item_path} answered {status}, which it does not declare: {content!r}"
    media = op["responses"][declared].get("content", {})
    if "application/json" not in media:
        return
    assert headers["Content-Type"].startswith("application/json"), headers
    schema = inline(media["application/json"]["schema"])
    try:
        jsonschema.validate(json.loads(content), schema)
    except jsonschema.ValidationError as exc:
        raise AssertionError(f"{method.upper()} {item_path} answered {status} breaking its own "
                             f"schema: {exc.message} at {list(exc.absolute_path)}") from None


def fuzz(world: World, item_path: str, method: str, examples: int,
         tally: Counter[int] | None = None) -> None:
    """Send ``examples`` drawn requests to one route and method; fail on a
    server error, an answer breaking its schema or a refusal that changed
    etcd (Hypothesis shrinks the request and prints it)."""
    api = world.portal.api()
    tally = Counter() if tally is None else tally

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.large_base_example])
    @given(request=requests_for(world, item_path, method))
    def one(request: Request) -> None:
        before = world.etcd()
        answer = api.raw(request.method, request.path, request.data,
                         headers={"Authorization": f"Bearer {api.token}"})
        tally[answer.status_code] += 1
        check_answer(item_path, method, answer.status_code, answer.content, answer.headers)
        if 400 <= answer.status_code < 500:
            after = world.etcd()
            changed = sorted(k for k in before.keys() | after.keys()
                             if before.get(k) != after.get(k))
            assert not changed, (f"{request.method} {request.path} was refused "
                                 f"({answer.status_code}: {answer.text}) but changed etcd: "
                                 f"{changed}")

    one()


@pytest.mark.parametrize("item_path,method", OPERATIONS,
                         ids=[f"{m.upper()} {p}" for p, m in OPERATIONS])
def test_route_survives_fuzzing(world: World, item_path: str, method: str) -> None:
    fuzz(world, item_path, method, EXAMPLES,
         TALLY.setdefault(f"{method.upper()} {item_path}", Counter()))


def test_the_floating_network_has_every_network_key(world: World) -> None:
    """Found by the fuzzer (60 examples): the floating network's view
    lacked the keys main added to networks (routed, dns_entries)."""
    shown = world.portal.api().get("/networks/floating")
    check_answer("/networks/{ref}", "get", shown.status_code, shown.content, shown.headers)


# --- the fuzzer finds what it is there to find ------------------------------------------------


def test_the_fuzzer_finds_a_planted_server_error(world: World,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(keypairs, "create", broken)
    with pytest.raises(Exception, match="planted|500"):
        fuzz(world, "/keypairs", "post", 5)


def test_the_fuzzer_finds_a_half_made_object_after_a_refusal(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    async def half(actor: Any, name: object, *args: Any, **kwargs: Any) -> None:
        key = world.portal.keys.root + "/planted/" + secrets.token_hex(4)
        await store.etcd().put(key, b"half-made")
        raise BadRequest("planted refusal")

    monkeypatch.setattr(keypairs, "create", half)
    with pytest.raises(AssertionError, match="changed etcd"):
        fuzz(world, "/keypairs", "post", 5)


def test_the_fuzzer_finds_an_answer_breaking_its_schema(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = world.portal.api().post("/keypairs", {"name": "shaped", "public_key": PUBLIC_KEY})
    assert ok.status_code == 200, ok.text
    monkeypatch.setattr(shapes, "keypair", lambda keypair: {"uuid": 7})
    with pytest.raises(AssertionError, match="breaking its own schema"):
        fuzz(world, "/keypairs", "get", 5)


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    cases = sum(sum(c.values()) for c in TALLY.values())
    statuses: Counter[int] = sum(TALLY.values(), Counter())
    record("fuzz", routes=len({op.split(" ", 1)[1] for op in TALLY}), operations=len(TALLY),
           cases=cases, examples_per_operation=EXAMPLES,
           statuses={str(k): v for k, v in sorted(statuses.items())},
           server_errors=sum(v for k, v in statuses.items() if k >= 500 and k not in (503, 507)))
