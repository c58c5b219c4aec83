"""POST /api/auth: trade a namespace's key (or a person's token) for a
bearer token. Failed attempts count against the caller's address and the
namespace, as failed log-ins do, so keys can't be guessed at speed, nor
from many addresses at once (the namespace's limit is its own setting)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from django.urls import path

from portal.accounts import throttle
from portal.accounts.actor import address_of
from portal.accounts.keys import authenticate_key
from portal.api.framework import endpoint
from portal.cloud.errors import TooManyRequests, Unauthenticated


@endpoint("POST", authenticated=False)
async def auth(request: HttpRequest, body: dict) -> dict:
    namespace = body.get("namespace")
    account = f"api:{namespace}"[:200]
    source = address_of(request)
    refusal = await sync_to_async(throttle.check)(
        account, source, account_limit=settings.API_KEY_FAILURES_PER_NAMESPACE,
        account_name="namespace")
    if refusal is not None:
        raise TooManyRequests(refusal.message)
    try:
        token, lifetime = await authenticate_key(namespace, body.get("key"))
    except Unauthenticated:
        await sync_to_async(throttle.failed)(account, source)
        raise
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}


routes = [path("/auth", auth)]
