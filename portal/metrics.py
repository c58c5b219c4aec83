"""The portal's /metrics (Prometheus' text format, under the metrics token:
see ``cloudstate.metrics``): its requests, by door (API or pages), route,
method and status, with their latencies; its open websockets by kind; and,
from the shared registry, etcd round trips and the process's own CPU and
memory. Each portal process answers for itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import Counter, Gauge, Histogram

from cloudstate import metrics

REQUESTS = Counter("sfcloud_portal_requests", "HTTP requests answered",
                   ["door", "method", "route", "status"])
REQUEST_SECONDS = Histogram(
    "sfcloud_portal_request_duration_seconds", "time to answer an HTTP request",
    ["door", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
# Where a new instance goes: the accounting over every placed instance, and the choice.
PLACEMENT_SECONDS = Histogram(
    "sfcloud_portal_placement_seconds", "time to decide which node a new instance goes to",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0))
WEBSOCKETS = Gauge("sfcloud_portal_websockets_open", "websockets open now, by what they serve",
                   ["kind"])
WEBSOCKETS_OPENED = Counter("sfcloud_portal_websockets_opened", "websockets accepted",
                            ["kind"])

# Methods are a closed set here, so a made-up one can't make new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def _labels(request: HttpRequest) -> tuple[str, str, str]:
    door = "api" if request.path.startswith("/api") else "page"
    method = request.method if request.method in _METHODS else "other"
    match = getattr(request, "resolver_match", None)
    # The route's pattern, not the path: one series per route, whatever the uuids.
    route = "/" + match.route if match is not None else "unmatched"
    return door, str(method), route


def _observe(request: HttpRequest, response: HttpResponseBase, started: float) -> None:
    door, method, route = _labels(request)
    REQUESTS.labels(door, method, route, str(response.status_code)).inc()
    REQUEST_SECONDS.labels(door, method, route).observe(time.perf_counter() - started)


Handler = Callable[[HttpRequest], HttpResponseBase]
AsyncHandler = Callable[[HttpRequest], Awaitable[HttpResponseBase]]


@sync_and_async_middleware
def count_requests(get_response: Handler | AsyncHandler) -> Handler | AsyncHandler:
    """Middleware: count every request and time it."""
    if iscoroutinefunction(get_response):
        async def async_middleware(request: HttpRequest) -> HttpResponseBase:
            started = time.perf_counter()
            response = await get_response(request)  # type: ignore[misc]
            _observe(request, response, started)
            return response
        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = get_response(request)
        _observe(request, response, started)  # type: ignore[arg-type]
        return response  # type: ignore[return-value]
    return middleware


def websocket_kind(path: str) -> str:
    """What a websocket serves, from its path: /ws/<kind>/..."""
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "ws" and parts[2] else "other"


def websocket_accepted(kind: str) -> None:
    WEBSOCKETS.labels(kind).inc()
    WEBSOCKETS_OPENED.labels(kind).inc()


def websocket_ended(kind: str) -> None:
    WEBSOCKETS.labels(kind).dec()


class CountWebsockets:
    """ASGI middleware: a websocket counts as open from its accept to its end.
    (Agents' event sockets come in on a listener of their own, which counts
    them the same way: portal.events.agents.)"""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = websocket_kind(scope.get("path", ""))
        accepted = False

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            await send(message)
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                websocket_accepted(kind)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if accepted:
                websocket_ended(kind)


def view(request: HttpRequest) -> HttpResponse:
    """GET /metrics, for Prometheus with the metrics token."""
    wanted = metrics.token()
    if wanted is None:
        return JsonResponse({"error": metrics.OFF_MESSAGE, "status": 404}, status=404)
    if not metrics.allowed(request.headers.get("Authorization", ""), wanted):
        return JsonResponse({"error": "the bearer token is missing or wrong", "status": 401},
                            status=401)
    return HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE)
