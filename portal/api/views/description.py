"""The API's description (portal.api.openapi): as OpenAPI 3.1 JSON for
tools, and as a page for people, rendered here on the server (no script,
nothing fetched from elsewhere). Anyone may read it, as anyone may read
GET /api."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from portal.api import openapi
from portal.api.framework import endpoint

METHOD_ORDER = ("get", "post", "put", "delete")


@endpoint("GET", authenticated=False)
async def openapi_json(request: HttpRequest, body: dict) -> dict[str, Any]:
    return openapi.document()


@endpoint("GET", authenticated=False)
async def docs(request: HttpRequest, body: dict) -> HttpResponse:
    document = openapi.document()
    operations = [
        {"method": method.upper(), "path": "/api" + (path_ if path_ != "/" else ""),
         "summary": op["summary"], "tag": op["tags"][0],
         "anchor": op["operationId"],
         "parameters": op.get("parameters", []),
         "authenticated": bool(op["security"]),
         "body": _pretty(op.get("requestBody", {}).get("content")),
         "responses": [(status, answer["description"], _pretty(answer.get("content")))
                       for status, answer in op["responses"].items()]}
        for path_, item in document["paths"].items()
        for method, op in sorted(item.items(), key=lambda m: METHOD_ORDER.index(m[0]))
    ]
    schemas = [(name, _pretty(schema))
               for name, schema in document["components"]["schemas"].items()]
    return render(request, "api/docs.html", {
        "info": document["info"], "operations": operations, "schemas": schemas})


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2) if value else ""


routes = [
    path("/openapi.json", openapi_json),
    path("/docs", docs),
]
