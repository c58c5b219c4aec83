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
from portal.accounts.access import actor_for
from portal.accounts.actor import Actor
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


async def _act(request: HttpRequest, uuid: UUID,
               action: Callable[[Actor, InstanceRecord], Awaitable[str]]) -> HttpResponse:
    """Run ``action`` (a service call) as the person: 404 for one who can't
    see the instance, 403 for one the service refuses; other refusals come
    back as a toast."""
    access, actor = await actor_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    try:
        text = await action(actor, record)
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

    async def run(actor: Actor, record: InstanceRecord) -> str:
        await power.request(actor, record, action)
        return f"{power_rules.LABELS[action]}: sent to {record.spec.name}."

    return await _act(request, uuid, run)


@login_required
@require_POST
async def snapshot(request: HttpRequest, uuid: UUID) -> HttpResponse:
    device = request.POST.get("device") or None

    async def run(actor: Actor, record: InstanceRecord) -> str:
        taken = await snapshots.request(actor, record, all_disks=device is None, device=device)
        disks = ", ".join(item.device for item in taken)
        return f"Taking a snapshot of {record.spec.name}: {disks}."

    return await _act(request, uuid, run)


def _form_value(raw: str) -> object:
    """A value typed into the form: one that reads as JSON (a list, an
    object) is kept as such, anything else as the text it is."""
    try:
        return json.loads(raw) if raw.strip()[:1] in ("[", "{") else raw
    except ValueError:
        return raw


@login_required
@require_POST
async def metadata_set(request: HttpRequest, uuid: UUID) -> HttpResponse:
    key = request.POST.get("key", "").strip()
    value = _form_value(request.POST.get("value", ""))

    async def run(actor: Actor, record: InstanceRecord) -> str:
        await metadata.set_item(actor, record, key, value)
        return f"Set {key} on {record.spec.name}."

    return await _act(request, uuid, run)


@login_required
@require_POST
async def metadata_delete(request: HttpRequest, uuid: UUID, key: str) -> HttpResponse:
    async def run(actor: Actor, record: InstanceRecord) -> str:
        await metadata.delete_item(actor, record, key)
        return f"Removed {key} from {record.spec.name}."

    return await _act(request, uuid, run)
