"""The API's description, OpenAPI 3.1, generated: never written by hand.

Three sources, each the one the portal itself runs on:

- the route table (portal.api.urls): every path, its parameters, and, from
  each view's ``endpoint`` declaration, its methods, whether it wants a
  bearer token and whether its body is raw bytes;
- the shapes (portal.api.shapes, TypedDicts) of what it answers, and the
  bodies it reads (portal.api.requests): turned into JSON Schema here;
- a line per route and method saying what it does, and which shapes
  (portal.api.operations).

A route added to the table appears here by itself; until it has its line
in operations it is marked undescribed, and tests/fast/test_openapi.py
fails. Answers are described exactly (no key a shape does not declare);
request bodies are open, since Shaken Fist's dialect ignores unknown keys.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, Literal, NotRequired, Union, get_args, get_origin

from django.urls import URLPattern, URLResolver

from portal.api.framework import Endpoint
from portal.api.operations import OPERATIONS, Op

UNDESCRIBED = "UNDESCRIBED: add this route to portal.api.operations"
_PARAMETER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>")
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


@dataclass(frozen=True)
class Route:
    pattern: str  # as portal.api.urls declares it, e.g. /instances/<str:ref>
    endpoint: Endpoint
    view: Any  # the view function the route calls

    @property
    def path(self) -> str:
        """The OpenAPI path, relative to the server's /api."""
        return _PARAMETER.sub(r"{\g<name>}", self.pattern) or "/"

    @property
    def parameters(self) -> list[str]:
        return [m.group("name") for m in _PARAMETER.finditer(self.pattern)]


def _walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """(pattern, view) of every route under ``patterns``."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.callback


def _table() -> list[tuple[str, Any]]:
    """The route table, without its last entry: the answer for paths it
    has no route for (a 404 in the API's error shape), which is no route."""
    from portal.api.urls import urlpatterns
    from portal.api.views.fallback import no_such_route

    return [(pattern, view) for pattern, view in _walk(urlpatterns, "")
            if view is not no_such_route]


def routes() -> list[Route]:
    """Every route of the API that declares how it answers (an ``@endpoint``
    view, or a plain one given an ``api_endpoint``); any other is left out
    here and named by ``undescribed``, so the description is never refused
    (a 500) for a route someone forgot to declare."""
    return [Route(pattern, view.api_endpoint, view) for pattern, view in _table()
            if isinstance(getattr(view, "api_endpoint", None), Endpoint)]


def undescribed() -> list[str]:
    """'METHOD pattern' of every route method without its line in operations,
    of every line in operations for a route or method that is gone, and
    '? pattern' of every route that declares no methods at all."""
    undeclared = sorted(f"? {pattern} (not an @endpoint view, and no api_endpoint)"
                        for pattern, view in _table()
                        if not isinstance(getattr(view, "api_endpoint", None), Endpoint))
    served = {(route.pattern, method) for route in routes() for method in route.endpoint.methods}
    described = {(pattern, method) for pattern, ops in OPERATIONS.items() for method in ops}
    return undeclared + sorted(f"{method} {pattern or '(empty)'}"
                               for pattern, method in served ^ described)


# --- JSON Schema from the shapes ----------------------------------------------------------------


class Schemas:
    """Turns Python types into JSON Schema, collecting TypedDicts as named
    components (``closed``: no keys beyond the declared ones)."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {}

    def of(self, tp: Any, *, closed: bool) -> dict[str, Any]:
        if tp is Any:
            return {}
        if tp is None or tp is type(None):
            return {"type": "null"}
        if tp in _JSON_TYPES:
            return {"type": _JSON_TYPES[tp]}
        if typing.is_typeddict(tp):
            return self._typeddict(tp, closed=closed)
        origin, args = get_origin(tp), get_args(tp)
        if origin is list:
            return {"type": "array", "items": self.of(args[0], closed=closed)}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1], closed=closed)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.of(arg, closed=closed) for arg in args]}
        if origin is Literal:
            return {"enum": list(args)}
        if origin is NotRequired:
            return self.of(args[0], closed=closed)
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _typeddict(self, tp: Any, *, closed: bool) -> dict[str, Any]:
        name = tp.__name__.lstrip("_")
        ref = {"$ref": f"#/components/schemas/{name}"}
        if name in self.components:
            return ref
        self.components[name] = {}  # placeholder: a shape may refer to itself
        hints = typing.get_type_hints(tp, include_extras=True)
        optional = {key for key, hint in hints.items() if get_origin(hint) is NotRequired}
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {key: self.of(hint, closed=closed) for key, hint in hints.items()},
        }
        required = sorted(set(tp.__required_keys__) - optional)
        if required:
            schema["required"] = required
        if closed:
            schema["additionalProperties"] = False
        if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
            schema["description"] = " ".join(tp.__doc__.split())
        self.components[name] = schema
        return ref


ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    "required": ["error", "status"],
}


def _operation(route: Route, method: str, op: Op | None, schemas: Schemas) -> dict[str, Any]:
    op = op or Op(UNDESCRIBED, Any)
    error = {"$ref": "#/components/schemas/Error"}
    if op.errors == "application/json":
        failure = {"content": {"application/json": {"schema": error}}}
    else:
        failure = {"content": {op.errors: {"schema": {"type": "string"}}}}
    if op.content == "application/json":
        success = {"content": {"application/json": {
            "schema": schemas.of(op.returns, closed=True)}}}
    elif op.content.startswith("text/"):
        success = {"content": {op.content: {"schema": {"type": "string"}}}}
    else:
        success = {"content": {op.content: {}}}
    responses: dict[str, Any] = {
        "200": {"description": "done", **success},
        "4XX": {"description": "refused: the error names the problem", **failure},
        "503": {"description": "etcd, or the node that holds it, can't be reached now; "
                               "retry", **failure},
    }
    if op.full:
        responses["507"] = {"description": "no room (a node, a pool, a network)", **failure}
    operation: dict[str, Any] = {
        "operationId": _operation_id(route, method),
        "summary": op.summary,
        "tags": [_tag(route)],
        "responses": responses,
        "security": [{"bearer": []}] if route.endpoint.authenticated else [],
    }
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in route.parameters]
    parameters += [{"name": name, "in": "query", "required": False, "schema": {"type": kind}}
                   for name, kind in op.query]
    if parameters:
        operation["parameters"] = parameters
    if op.raw_body is not None:
        operation["requestBody"] = {"content": {op.raw_body: {}}}
    elif op.body is not None:
        operation["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": schemas.of(op.body, closed=False)}}}
    return operation


def _operation_id(route: Route, method: str) -> str:
    words = re.sub(r"[^a-zA-Z0-9]+", "_", route.pattern.replace("<", "by_")).strip("_")
    return f"{method.lower()}_{words or 'root'}"


def _tag(route: Route) -> str:
    first = route.path.strip("/").split("/")[0]
    return first if first and not first.startswith("{") else "server"


def _release() -> str:
    try:
        return metadata.version("sfcloud")
    except metadata.PackageNotFoundError:
        return "dev"


@cache
def document() -> dict[str, Any]:
    """The whole description (made once per process: the routes are fixed)."""
    schemas = Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes():
        described = OPERATIONS.get(route.pattern, {})
        item = paths.setdefault(route.path, {})
        for method in route.endpoint.methods:
            item[method.lower()] = _operation(route, method, described.get(method), schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sfcloud",
            "version": _release(),
            "description": "Shaken Fist's REST dialect, as sfcloud speaks it. Success is 200 "
                           "with a JSON body (null is fine); errors are {error, status}; "
                           "bodies are read on GET and DELETE too; unknown keys are ignored; "
                           "objects are found by UUID or by name.",
        },
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, **dict(sorted(schemas.components.items()))},
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "POST /auth with a namespace and key for a token, or a "
                               "personal token (sfp_...)"}},
        },
    }
