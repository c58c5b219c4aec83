"""Health endpoints for load balancers and monitoring, as Shaken Fist's
server has them: unauthenticated, plain text, not audited.

- ``/livez``: the process answers (``ok``); nothing else is checked.
- ``/readyz`` and ``/healthz`` (the same check): ``ready`` when this portal
  can serve, else 503 ``not ready``: etcd answers, the database answers,
  and the portal is not shutting down.

They are served at the portal's root (where a load balancer looks) and
under /api (where Shaken Fist's server has them, relative to its API URL).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from cloudstate.etcd import EtcdUnavailable
from portal.api.framework import Endpoint
from portal.cloud import store

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 3.0
_draining = False


def drain() -> None:
    """The portal is stopping: from now on it is not ready."""
    global _draining
    _draining = True


def _text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="text/plain; charset=utf-8")


async def _etcd_answers() -> bool:
    try:
        await asyncio.wait_for(store.etcd().get(store.keys().root), CHECK_TIMEOUT)
    except (EtcdUnavailable, TimeoutError, OSError) as exc:
        log.warning("not ready: etcd does not answer (%s)", exc)
        return False
    return True


@sync_to_async
def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
        log.warning("not ready: the database does not answer (%s)", exc)
        return False
    return True


async def ready() -> bool:
    if _draining:
        return False
    etcd_ok, database_ok = await asyncio.gather(_etcd_answers(), _database_answers())
    return etcd_ok and database_ok


@csrf_exempt
async def livez(request: HttpRequest) -> HttpResponse:
    return _text("ok")


@csrf_exempt
async def readyz(request: HttpRequest) -> HttpResponse:
    return _text("ready") if await ready() else _text("not ready", 503)


# How the API's description (portal.api.openapi) sees them under /api: read
# with GET, no token.
for _view in (livez, readyz):
    _view.api_endpoint = Endpoint(  # type: ignore[attr-defined]
        methods=("GET",), authenticated=False, raw_body=False)


def routes(prefix: str = "") -> list:
    return [
        path(f"{prefix}livez", livez),
        path(f"{prefix}readyz", readyz),
        path(f"{prefix}healthz", readyz),
    ]
