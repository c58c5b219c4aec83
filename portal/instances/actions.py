"""What the buttons and small forms on the instance pages post to: power
actions, snapshots, metadata. Each calls the same service as the API, so
the refusals read the same; the page learns the outcome over its websocket,
and htmx shows the reply as a toast."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudstate import power as power_rules
from cloudstate.validation import ValidationError
from portal.accounts import audit
from portal.accounts.access import access_for
from portal.cloud import instances, metadata, power, snapshots
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.cloud.instances import InstanceRecord


def _reply(request: HttpRequest, record: InstanceRecord, text: str, level: str) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        response = HttpResponse(status=200)
        response["HX-Trigger"] = json.dumps({"sfcloud:toast": {"text": text, "level": level}})
        return response
    getattr(messages, level)(request, text)
    return HttpResponseRedirect(reverse("instance-detail", args=[record.uuid]))


async def _act(request: HttpRequest, uuid: UUID, name: str,
               action: Callable[[InstanceRecord, str], Awaitable[str]]) -> HttpResponse:
    """Run ``action`` for someone who may change the instance: 404 for one
    who can't see it, 403 for a viewer; other refusals come back as a toast."""
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    try:
        async with audit.recording(access, record.spec.namespace, name, "instance",
                                   object_id=record.uuid, object_name=record.spec.name,
                                   source=audit.source_of(request)):
            access.require_operate(record.spec.namespace, f"instance {record.uuid}")
            text = await action(record, f"user {access.username}")
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except ValidationError as exc:
        return _reply(request, record, str(exc), "error")
    except CloudError as exc:
        return _reply(request, record, exc.message, "error")
    return _reply(request, record, text, "success")


@login_required
@require_POST
async def power_action(request: HttpRequest, uuid: UUID, action: str) -> HttpResponse:
    if action not in power_rules.ALLOWED_FROM:
        raise Http404("No such action")

    async def run(record: InstanceRecord, actor: str) -> str:
        await power.request(record, action, actor)
        return f"{power_rules.LABELS[action]}: sent to {record.spec.name}."

    verb = {intent: verb for verb, intent in power_rules.API_ACTIONS.items()}[action]
    return await _act(request, uuid, verb, run)


@login_required
@require_POST
async def snapshot(request: HttpRequest, uuid: UUID) -> HttpResponse:
    device = request.POST.get("device") or None

    async def run(record: InstanceRecord, actor: str) -> str:
        taken = await snapshots.request(record, all_disks=device is None, device=device,
                                        actor=actor)
        names = ", ".join(image.name for image in taken)
        return f"Taking a snapshot of {record.spec.name}: {names}."

    return await _act(request, uuid, "snapshot", run)


@login_required
@require_POST
async def metadata_set(request: HttpRequest, uuid: UUID) -> HttpResponse:
    key = request.POST.get("key", "").strip()
    raw = request.POST.get("value", "")

    async def run(record: InstanceRecord, actor: str) -> str:
        # A value that reads as JSON (a list, a number) is kept as such.
        try:
            value = json.loads(raw) if raw.strip()[:1] in ("[", "{") else raw
        except ValueError:
            value = raw
        await metadata.set_item(record, key, value, actor)
        return f"Set {key} on {record.spec.name}."

    return await _act(request, uuid, "set-metadata", run)


@login_required
@require_POST
async def metadata_delete(request: HttpRequest, uuid: UUID, key: str) -> HttpResponse:
    async def run(record: InstanceRecord, actor: str) -> str:
        await metadata.delete_item(record, key, actor)
        return f"Removed {key} from {record.spec.name}."

    return await _act(request, uuid, "delete-metadata", run)
