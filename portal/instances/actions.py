"""What the buttons and small forms on the instance pages post to: power
actions, snapshots, metadata. Each calls the same service as the API, so
the refusals read the same; the page learns the outcome over its websocket.

A button's answer is a toast (htmx) or, from a confirmation dialog's plain
form, a message on the page it came from (``next``). A form's answer is the
form again, with the refusal beside its field and what was typed kept."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudstate import power as power_rules
from cloudstate.validation import ValidationError
from portal.accounts.access import access_for, actor_for
from portal.accounts.actor import Actor
from portal.cloud import instances, metadata, power, snapshots
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.cloud.instances import InstanceRecord
from portal.errors import sentence
from portal.formerrors import add_refusal, split_field
from portal.instances import detail
from portal.instances.forms import SnapshotForm, TagForm
from portal.instances.views import detail_page
from portal.web import arender, safe_next


def _toast(response: HttpResponse, text: str, level: str) -> HttpResponse:
    response["HX-Trigger"] = json.dumps({"sfcloud:toast": {"text": text, "level": level}})
    return response


def _reply(request: HttpRequest, record: InstanceRecord, text: str, level: str) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        return _toast(HttpResponse(status=200), text, level)
    getattr(messages, level)(request, text)
    return HttpResponseRedirect(safe_next(request, reverse("instance-detail",
                                                           args=[record.uuid])))


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
    except (ValidationError, CloudError) as exc:
        why = exc.message if isinstance(exc, ValidationError) else split_field(exc.message)[1]
        return _reply(request, record, sentence(f"not done for {record.spec.name}: {why}"),
                      "error")
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


async def _form_answer(request: HttpRequest, uuid: UUID, form: forms.Form, template: str,
                       action: Callable[[Actor, InstanceRecord], Awaitable[str]],
                       fields: dict[str, str | None], fresh: Callable[[], forms.Form],
                       tab: str) -> HttpResponse:
    """Run a small form's ``action`` and answer with the form: with htmx the
    form alone (fresh, with a toast, once done; else as sent, with the
    refusal beside its field); without, the tab it is on."""
    access, actor = await actor_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    text = None
    if form.is_valid():
        try:
            text = await action(actor, record)
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, fields)
    name = template.rsplit("/", 1)[-1].removeprefix("_").removesuffix(".html")
    if request.htmx:  # type: ignore[attr-defined]
        shown = fresh() if text else form
        response = await arender(request, template, {"record": record, name: shown},
                                 status=200 if text else 400)
        return _toast(response, text, "success") if text else response
    if text:
        messages.success(request, text)
        return HttpResponseRedirect(reverse("instance-tab", args=[record.uuid, tab]))
    # The whole page, on the form's tab, with the form as it was sent.
    return await detail_page(request, record, access.can_operate(record.spec.namespace), tab,
                             status=400, **{name: form})


@login_required
@require_POST
async def snapshot(request: HttpRequest, uuid: UUID) -> HttpResponse:
    async def run(actor: Actor, record: InstanceRecord) -> str:
        device = form.cleaned_data["device"] or None
        taken = await snapshots.request(actor, record, all_disks=device is None, device=device)
        disks = ", ".join(item.device for item in taken)
        return f"Taking a snapshot of {record.spec.name}: {disks}."

    access = await access_for(request)
    try:
        found = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    devices = detail.snapshot_devices(found)
    form = SnapshotForm(request.POST, devices=devices)
    return await _form_answer(request, uuid, form, "instances/_snapshot_form.html", run,
                              {"device": "device", "snapshots": "device",
                               "snapshot_bytes": "device"},
                              lambda: SnapshotForm(devices=devices),
                              "snapshots")


@login_required
@require_POST
async def metadata_set(request: HttpRequest, uuid: UUID) -> HttpResponse:
    form = TagForm(request.POST)

    async def run(actor: Actor, record: InstanceRecord) -> str:
        key = form.cleaned_data["key"]
        await metadata.set_item(actor, record, key, form.cleaned_data["value"])
        return f"Set {key} on {record.spec.name}."

    return await _form_answer(request, uuid, form, "instances/_tag_form.html", run,
                              {"key": "key", "value": "value"}, TagForm, "summary")


@login_required
@require_POST
async def metadata_delete(request: HttpRequest, uuid: UUID, key: str) -> HttpResponse:
    async def run(actor: Actor, record: InstanceRecord) -> str:
        await metadata.delete_item(actor, record, key)
        return f"Removed {key} from {record.spec.name}."

    return await _act(request, uuid, run)
