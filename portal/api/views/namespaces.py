"""Namespaces, their keys and metadata through Shaken Fist's endpoints.

Shaken Fist's client sends PUT to /keys (without the key's name) for
``namespace update-key``, which its own server never routed; both forms
work here.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import path

from portal.accounts import namespaces as service
from portal.accounts.actor import Actor
from portal.api import shapes
from portal.api.framework import endpoint
from portal.cloud import quotas


@endpoint("GET", "POST")
async def collection(request: HttpRequest, body: dict, actor: Actor) -> Any:
    if request.method == "POST":
        created = await service.create_namespace(
            actor, body.get("namespace"), key_name=body.get("key_name"), key=body.get("key"))
        return shapes.namespace(await service.get_namespace(actor, created.name))
    return [shapes.namespace(ns) for ns in await service.list_namespaces(actor)]


@endpoint("GET", "DELETE")
async def detail(request: HttpRequest, body: dict, actor: Actor, namespace: str) -> Any:
    if request.method == "DELETE":
        await service.delete_namespace(actor, namespace)
        return None
    return shapes.namespace(await service.get_namespace(actor, namespace))


@endpoint("GET", "POST", "PUT")
async def keys(request: HttpRequest, body: dict, actor: Actor, namespace: str) -> Any:
    """GET: the names of the namespace's keys; POST adds one, PUT gives one a new secret."""
    if request.method == "GET":
        return await service.key_names(actor, namespace)
    key = await service.set_key(actor, namespace, body.get("key_name"), body.get("key"),
                                new=request.method == "POST")
    return key.name


@endpoint("PUT", "DELETE")
async def key_detail(request: HttpRequest, body: dict, actor: Actor, namespace: str,
                     key_name: str) -> Any:
    if request.method == "DELETE":
        await service.delete_key(actor, namespace, key_name)
        return None
    key = await service.set_key(actor, namespace, key_name, body.get("key"), new=False)
    return key.name


@endpoint("GET", "POST")
async def metadata(request: HttpRequest, body: dict, actor: Actor, namespace: str) -> dict:
    """The namespace's metadata; POST sets one key, as PUT .../metadata/<key> does."""
    if request.method == "POST":
        return await service.set_metadata(actor, namespace, body.get("key"), body.get("value"))
    return (await service.get_namespace(actor, namespace)).metadata


@endpoint("GET", "PUT")
async def quota(request: HttpRequest, body: dict, actor: Actor, namespace: str) -> dict:
    """The namespace's limits and use (anyone who may read it); PUT changes
    the limits named in the body, e.g. ``{"vcpus": 8, "networks": null}``
    (system admins)."""
    if request.method == "PUT":
        await quotas.set_limits(actor, namespace, body)
    return shapes.quota(namespace, await quotas.report(actor, namespace))


@endpoint("PUT", "DELETE")
async def metadata_item(request: HttpRequest, body: dict, actor: Actor, namespace: str,
                        key: str) -> dict:
    if request.method == "DELETE":
        return await service.delete_metadata(actor, namespace, key)
    return await service.set_metadata(actor, namespace, key, body.get("value"))


@endpoint("POST")
async def trust(request: HttpRequest, body: dict, actor: Actor, namespace: str) -> dict:
    """Let another namespace see this one (``{"external_namespace": ...}``)."""
    return shapes.namespace(await service.add_trust(actor, namespace,
                                                    body.get("external_namespace")))


@endpoint("DELETE")
async def trust_detail(request: HttpRequest, body: dict, actor: Actor, namespace: str,
                       other: str) -> dict:
    return shapes.namespace(await service.remove_trust(actor, namespace, other))


routes = [
    path("/auth/namespaces", collection),
    path("/auth/namespaces/<str:namespace>", detail),
    path("/auth/namespaces/<str:namespace>/keys", keys),
    path("/auth/namespaces/<str:namespace>/keys/<str:key_name>", key_detail),
    path("/auth/namespaces/<str:namespace>/metadata", metadata),
    path("/auth/namespaces/<str:namespace>/quota", quota),
    path("/auth/namespaces/<str:namespace>/metadata/<str:key>", metadata_item),
    path("/auth/namespaces/<str:namespace>/trust", trust),
    path("/auth/namespaces/<str:namespace>/trust/<str:other>", trust_detail),
]
