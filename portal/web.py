"""Small helpers shared by the HTML pages."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


async def arender(
    request: HttpRequest, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> HttpResponse:
    """render() from an async view: context processors and templates may
    touch the database, which Django only allows outside the event loop."""
    return await sync_to_async(render)(request, template, context or {}, status=status)
