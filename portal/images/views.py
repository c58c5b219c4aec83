"""The images pages: what the namespace can boot from (images, snapshots,
labels, files), caching one by URL with live progress per node, uploading
one from a file (portal.images.uploads), downloading one, and deleting one."""

from __future__ import annotations

import json
from uuid import UUID

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cloudstate.validation import ValidationError
from portal import downloads
from portal.accounts.access import Access, access_for
from portal.cloud import artifacts, blobs, urlcheck
from portal.cloud.catalogue import ArtifactRecord
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.events.sections import events_context
from portal.web import arender


class CacheForm(forms.Form):
    url = forms.CharField(label="Image URL", max_length=2048,
                          help_text="An http(s) URL of a qcow2 or raw disk image. It is "
                                    "fetched now, and every node copies it, so instances "
                                    "from it start at once.")
    name = forms.CharField(label="Name", required=False, max_length=63,
                           help_text="Defaults to the file name in the URL.")


def page_context(records: list[ArtifactRecord], access: Access) -> dict:
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
            # The API accepts any URL and reports a failed fetch on the
            # image; the form says at once what is plainly not an image.
            await urlcheck.probe(url, "url")
            record = await artifacts.cache(access.actor(request), url, namespace,
                                           name=form.cleaned_data["name"] or None)
        except ValidationError as exc:
            error = str(exc)
        except CloudError as exc:
            error = exc.message
        else:
            text = f"Fetching {record.spec.name}; every node copies it."
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
        "can_operate": access.can_operate(record.spec.namespace),
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
    messages.success(request, f"Image {record.spec.name} is deleted.")
    return HttpResponseRedirect(reverse("image-list"))


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
