"""The images pages: what the namespace can boot from, caching one by URL
with live progress per node, and deleting one nothing uses."""

from __future__ import annotations

import json
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudstate.validation import ValidationError
from portal.accounts.access import Access, access_for
from portal.cloud import artifacts
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.events.sections import events_context
from portal.web import arender


class CacheForm(forms.Form):
    url = forms.CharField(label="Image URL", max_length=2048,
                          help_text="An http(s) URL of a qcow2 or raw disk image. Every node "
                                    "fetches it now, so instances from it start at once.")
    name = forms.CharField(label="Name", required=False, max_length=63,
                           help_text="Defaults to the file name in the URL.")


def page_context(records: list[artifacts.ImageRecord], access: Access) -> dict:
    return {"records": records, "nodes": records[0].hypervisors if records else (),
            "can_operate": access.current is not None and access.can_operate(access.current)}


def _toast(text: str, level: str) -> HttpResponse:
    response = HttpResponse(status=200)
    response["HX-Trigger"] = json.dumps({"sfcloud:toast": {"text": text, "level": level}})
    return response


@login_required
async def image_list(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    records = await artifacts.list_records(access.scope)
    return await arender(request, "images/list.html", {
        **page_context(records, access), "form": CacheForm(),
    })


@login_required
@require_POST
async def image_cache(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    namespace = access.current
    if namespace is None or not access.can_operate(namespace):
        raise PermissionDenied("Your role here does not let you add images.")
    form = CacheForm(request.POST)
    error = None
    if form.is_valid():
        url = form.cleaned_data["url"].strip()
        try:
            record = await artifacts.cache(access.actor(request), url, namespace,
                                           name=form.cleaned_data["name"] or None)
        except ValidationError as exc:
            error = str(exc)
        except CloudError as exc:
            error = exc.message
        else:
            text = f"Fetching {record.image.name} onto every node."
            if request.htmx:  # type: ignore[attr-defined]
                return _toast(text, "success")
            messages.success(request, text)
            return HttpResponseRedirect(reverse("image-list"))
    else:
        error = "; ".join(f"{form.fields[f].label}: {' '.join(e)}" for f, e in form.errors.items())
    if request.htmx:  # type: ignore[attr-defined]
        return _toast(error, "error")
    messages.error(request, error)
    return HttpResponseRedirect(reverse("image-list"))


async def _record_for(request: HttpRequest, uuid: UUID) -> tuple[artifacts.ImageRecord, Access]:
    access = await access_for(request)
    try:
        return await artifacts.get(str(uuid), access.visible), access
    except NotFound:
        raise Http404("No such image") from None


@login_required
async def image_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _record_for(request, uuid)
    return await arender(request, "images/detail.html", {
        "record": record, "nodes": record.hypervisors,
        "can_operate": access.can_operate(record.image.namespace),
        **await events_context("image", record.uuid),
    })


@login_required
@require_POST
async def image_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _record_for(request, uuid)
    try:
        await artifacts.delete(access.actor(request), record)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except CloudError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("image-detail", args=[record.uuid]))
    messages.success(request, f"Image {record.image.name} is being deleted.")
    return HttpResponseRedirect(reverse("image-list"))
