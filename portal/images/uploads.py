"""What the Images page's upload form talks to (static/js/upload.js):
the same upload service as the API (portal.cloud.uploads), answered in
JSON, with the person's session and CSRF token instead of a bearer token.

    POST /images/uploads/                   start one: {"uuid", "size": 0}
    GET  /images/uploads/<uuid>/            {"uuid", "size"}: where to carry on from
                                            after a dropped connection
    POST /images/uploads/<uuid>/chunk/      the next bytes (the body, not a form);
                                            {"size": the new total}
    POST /images/uploads/<uuid>/artifact/   form field ``name``: make it an image;
                                            {"uuid", "url"} of the image's page

Refusals are {"error": ...} with the service's status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cloudstate.validation import ValidationError
from portal.accounts.access import actor_for
from portal.accounts.actor import Actor
from portal.api.views.uploads import pieces
from portal.cloud import uploads
from portal.cloud.errors import BadRequest, CloudError


async def _answer(request: HttpRequest, work: Callable[[Actor], Awaitable[dict[str, Any]]]
                  ) -> JsonResponse:
    _, actor = await actor_for(request)
    try:
        return JsonResponse(await work(actor))
    except ValidationError as exc:
        return JsonResponse({"error": str(exc), "status": 400}, status=400)
    except CloudError as exc:
        return JsonResponse({"error": exc.message, "status": exc.status}, status=exc.status)


@login_required
@require_POST
async def start(request: HttpRequest) -> JsonResponse:
    async def work(actor: Actor) -> dict[str, Any]:
        if actor.namespace is None:
            raise BadRequest("choose the namespace to upload into first")
        upload = await uploads.create(actor, actor.namespace)
        return {"uuid": upload.uuid, "size": 0}

    return await _answer(request, work)


@login_required
@require_GET
async def status(request: HttpRequest, uuid: UUID) -> JsonResponse:
    async def work(actor: Actor) -> dict[str, Any]:
        upload = await uploads.get(str(uuid), actor.visible)
        return {"uuid": upload.uuid, "size": await uploads.size(upload)}

    return await _answer(request, work)


@login_required
@require_POST
async def chunk(request: HttpRequest, uuid: UUID) -> JsonResponse:
    async def work(actor: Actor) -> dict[str, Any]:
        upload = await uploads.get(str(uuid), actor.visible)
        return {"size": await uploads.append(actor, upload, pieces(request))}

    return await _answer(request, work)


@login_required
@require_POST
async def finish(request: HttpRequest, uuid: UUID) -> JsonResponse:
    async def work(actor: Actor) -> dict[str, Any]:
        upload = await uploads.get(str(uuid), actor.visible)
        record = await uploads.to_artifact(actor, request.POST.get("name"), upload.namespace,
                                           upload_uuid=upload.uuid)
        return {"uuid": record.uuid, "url": reverse("image-detail", args=[record.uuid])}

    return await _answer(request, work)
