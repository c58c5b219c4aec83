"""How every API endpoint behaves, in Shaken Fist's dialect.

Success is 200 with a JSON body (``null`` is fine), never 201 or 204.
Errors are ``{"error": "...", "status": N}``. Request bodies are JSON and
are read on GET and DELETE too, because Shaken Fist's client sends them
there. Unknown keys are ignored. Authentication is a bearer token from
POST /auth. CSRF does not apply: no cookie is ever accepted here.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from cloudstate.etcd import EtcdUnavailable
from cloudstate.validation import ValidationError
from portal.accounts.actor import Actor, address_of
from portal.accounts.keys import Principal, principal_for_token
from portal.cloud.errors import CloudError, Unauthenticated
from portal.cloud.middleware import MESSAGE as ETCD_DOWN

log = logging.getLogger(__name__)



def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "status": status}, status=status)


def parse_body(request: HttpRequest) -> dict[str, Any]:
    # Bodies over the route's limit were refused as they arrived (portal.bodylimit).
    raw = request.body
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError("body", f"is not valid JSON ({exc})") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object")
    return body


async def authenticate(request: HttpRequest) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token: POST /auth with a namespace and key first")
    return await principal_for_token(token.strip())


Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """How a view made by ``endpoint`` answers: its methods, whether it
    wants a bearer token, whether its body is raw bytes."""

    methods: tuple[str, ...]
    authenticated: bool
    raw_body: bool


def endpoint(*methods: str, authenticated: bool = True,
             raw_body: bool = False) -> Callable[[Handler], Any]:
    """Wrap ``handler(request, body, actor, **url_args)`` (or, without
    authentication, ``handler(request, body, **url_args)``) as an API view.
    The Actor is the caller (a key or a person's token), as every service
    that changes something takes it. With ``raw_body`` the body is not
    JSON: the handler gets ``{}`` and reads the request itself, a piece at
    a time (an upload's chunk)."""

    def decorate(handler: Handler) -> Any:
        @csrf_exempt
        @functools.wraps(handler)
        async def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            if request.method not in methods:
                refused = error(405, f"{request.method} is not allowed here; use "
                                     + " or ".join(methods))
                refused["Allow"] = ", ".join(methods)
                return refused
            try:
                body = {} if raw_body else parse_body(request)
                if authenticated:
                    principal = await authenticate(request)
                    actor = Actor.for_api(principal, address_of(request))
                    result = await handler(request, body, actor, **kwargs)
                else:
                    result = await handler(request, body, **kwargs)
            except ValidationError as exc:
                return error(400, str(exc))
            except CloudError as exc:
                return error(exc.status, exc.message)
            except EtcdUnavailable as exc:
                log.warning("etcd unavailable: %s", exc)
                return error(503, ETCD_DOWN)
            if isinstance(result, HttpResponseBase):
                return result
            return JsonResponse(result, safe=False, status=200)

        # What the route table tells the API's description (portal.api.openapi).
        view.api_endpoint = Endpoint(  # type: ignore[attr-defined]
            methods=methods, authenticated=authenticated, raw_body=raw_body)
        return view

    return decorate
