"""The images pages: what the namespace can boot from (images, snapshots,
labels, files), caching one by URL with live progress per node, uploading
one from a file (portal.images.uploads), downloading one, and deleting one."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cloudstate import validation
from cloudstate.validation import ValidationError
from portal import downloads
from portal.accounts.access import Access, access_for
from portal.cloud import artifacts, blobs, urlcheck
from portal.cloud.catalogue import ArtifactRecord
from portal.cloud.errors import CloudError, NotFound
from portal.errors import sentence
from portal.events.sections import events_context, events_query
from portal.formerrors import add_refusal
from portal.images.listing import IMAGES, rows_for, source_shown
from portal.web import arender, change_and_go


class CacheForm(forms.Form):
    url = forms.CharField(label="Image URL", max_length=2048,
                          help_text="An http(s) URL of a qcow2 or raw disk image. It is "
                                    "fetched now, and every node copies it, so instances "
                                    "from it start at once.")
    name = forms.CharField(label="Name", required=False, max_length=63,
                           help_text="Defaults to the file name in the URL.")

    def clean_url(self) -> str:
        try:
            return validation.image_url(self.cleaned_data["url"].strip(), "url")
        except ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from None

    def clean_name(self) -> str:
        name = self.cleaned_data.get("name") or ""
        try:
            return artifacts.validate_name(name) if name else ""
        except ValidationError as exc:
            raise forms.ValidationError(sentence(exc.message)) from None


def page_context(records: list[ArtifactRecord], access: Access,
                 params: Mapping[str, Any]) -> dict[str, Any]:
    """The list's page as asked (portal.listing): for the page and its websocket."""
    rows = rows_for(records, access)
    page = IMAGES.page(rows, IMAGES.read(params))
    return {**IMAGES.view_context(rows, page), "list_label": "images",
            "nodes": records[0].hypervisors if records else (),
            "can_operate": access.current is not None and access.can_operate(access.current)}


@login_required
async def image_list(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    records = await artifacts.list_records(access.scope)
    context = page_context(records, access, request.GET)
    return await arender(request, "images/list.html", {**context, "form": CacheForm()},
                         status=400 if context["page"].query.errors else 200)


@login_required
@require_POST
async def image_cache(request: HttpRequest) -> HttpResponse:
    """Cache a URL. A refusal shows beside its field with what was typed
    kept: the form alone with htmx, else the whole page."""
    access = await access_for(request)
    namespace = access.current
    if namespace is None or not access.can_operate(namespace):
        raise PermissionDenied("Your role here does not let you add images.")
    form = CacheForm(request.POST)
    if form.is_valid():
        url = form.cleaned_data["url"]
        try:
            # The API accepts any URL and reports a failed fetch on the
            # image; the form says at once what is plainly not an image.
            await urlcheck.probe(url, "url")
            record = await artifacts.cache(access.actor(request), url, namespace,
                                           name=form.cleaned_data["name"] or None)
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, default="url")
        else:
            text = f"Fetching {record.spec.name}; every node copies it."
            if request.htmx:  # type: ignore[attr-defined]
                response = await arender(request, "images/_cache_form.html",
                                         {"form": CacheForm()})
                response["HX-Trigger"] = json.dumps({"sfcloud:toast": {"text": text,
                                                                       "level": "success"}})
                return response
            messages.success(request, text)
            return HttpResponseRedirect(reverse("image-list"))
    if request.htmx:  # type: ignore[attr-defined]
        return await arender(request, "images/_cache_form.html", {"form": form}, status=400)
    records = await artifacts.list_records(access.scope)
    return await arender(request, "images/list.html", {
        **page_context(records, access, request.GET), "form": form}, status=400)


async def _record_for(request: HttpRequest, uuid: UUID) -> tuple[ArtifactRecord, Access]:
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
        "used_by": record.used_by_in(access.visible), "source": source_shown(record, access),
        "can_operate": access.can_operate(record.spec.namespace),
        **await events_context("image", record.uuid, events_query(request.GET),
                                  here=request.path),
    })


@login_required
@require_POST
async def image_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _record_for(request, uuid)
    return await change_and_go(
        request, artifacts.delete(access.actor(request), record),
        said=f"Image {record.spec.name} is deleted.", done_url=reverse("image-list"),
        refused_url=reverse("image-detail", args=[record.uuid]))


@login_required
@require_GET
async def image_download(request: HttpRequest, uuid: UUID) -> HttpResponseBase:
    """The newest version's bytes, saved under the image's name."""
    record, _ = await _record_for(request, uuid)
    if record.newest is None:
        raise Http404("This image has no version to download yet")
    return await _download(request, record.newest.uuid, record.spec.name)


@login_required
@require_GET
async def blob_download(request: HttpRequest, uuid: UUID) -> HttpResponseBase:
    """One blob's bytes (a snapshot's version, say)."""
    return await _download(request, str(uuid), str(uuid))


async def _download(request: HttpRequest, blob_uuid: str, filename: str) -> HttpResponseBase:
    access = await access_for(request)
    try:
        blob = await blobs.get(blob_uuid, access.visible)
        return await downloads.response(request, blob, filename=filename)
    except NotFound:
        raise Http404("No such blob") from None
    except CloudError as exc:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
