"""Namespaces, their keys and metadata through Shaken Fist's endpoints.

Shaken Fist's client sends PUT to /keys (without the key's name) for
``namespace update-key``, which its own server never routed; both forms
work here.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts import audit
from portal.accounts import namespaces as service
from portal.accounts.keys import Principal
from portal.api import shapes
from portal.api.framework import endpoint


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, principal: Principal) -> Any:
    if request.method == "POST":
        created = await service.create_namespace(
            principal, body.get("namespace"), key_name=body.get("key_name"),
            key=body.get("key"), source=audit.source_of(request))
        return shapes.namespace(await service.get_namespace(principal, created.name))
    return [shapes.namespace(ns) for ns in await service.list_namespaces(principal)]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, principal: Principal, namespace: str) -> Any:
    if request.method == "DELETE":
        await service.delete_namespace(principal, namespace, source=audit.source_of(request))
        return None
    return shapes.namespace(await service.get_namespace(principal, namespace))


@endpoint("POST", "PUT")
async def keys(request: HttpRequest, body: dict, principal: Principal, namespace: str) -> str:
    key, _ = await service.set_key(
        principal, namespace, body.get("key_name"), body.get("key"),
        source=audit.source_of(request), must_be_new=request.method == "POST",
        must_exist=request.method == "PUT")
    return key.name


@endpoint("PUT", "DELETE")
async def key_detail(request: HttpRequest, body: dict, principal: Principal, namespace: str,
                     key_name: str) -> Any:
    if request.method == "DELETE":
        await service.delete_key(principal, namespace, key_name,
                                 source=audit.source_of(request))
        return None
    key, _ = await service.set_key(principal, namespace, key_name, body.get("key"),
                                   source=audit.source_of(request), must_exist=True)
    return key.name


@endpoint("GET")
async def metadata(request: HttpRequest, body: dict, principal: Principal,
                   namespace: str) -> dict:
    return (await service.get_namespace(principal, namespace)).metadata


@endpoint("PUT", "DELETE")
async def metadata_item(request: HttpRequest, body: dict, principal: Principal, namespace: str,
                        key: str) -> dict:
    if request.method == "DELETE":
        return await service.delete_metadata(principal, namespace, key,
                                             source=audit.source_of(request))
    return await service.set_metadata(principal, namespace, key, body.get("value"),
                                      source=audit.source_of(request))


routes = [
    path("/auth/namespaces", collection),
    path("/auth/namespaces/<str:namespace>", detail),
    path("/auth/namespaces/<str:namespace>/keys", keys),
    path("/auth/namespaces/<str:namespace>/keys/<str:key_name>", key_detail),
    path("/auth/namespaces/<str:namespace>/metadata", metadata),
    path("/auth/namespaces/<str:namespace>/metadata/<str:key>", metadata_item),
]
