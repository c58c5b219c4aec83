"""POST /api/auth: trade a namespace's key for a bearer token."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import path

from portal.accounts.keys import authenticate_key
from portal.api.framework import endpoint


@endpoint("POST", authenticated=False)
async def auth(request: HttpRequest, body: dict) -> dict:
    token, lifetime = await authenticate_key(body.get("namespace"), body.get("key"))
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}


routes = [path("/auth", auth)]
