"""What /api answers for a path it has no route for: JSON in Shaken Fist's
error shape, whatever the method, never the portal's HTML 404 page (a
script reading /api must always get something it can parse)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from portal.api.framework import error


@csrf_exempt
async def no_such_route(request: HttpRequest) -> JsonResponse:
    return error(404, f"no API route {request.method} {request.path}")


# Last in the API's URLconf: it matches what nothing before it did.
routes = [re_path(r"^/.*$", no_such_route)]
