"""The instance pages: the live list, the create form, detail and delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate.validation import ValidationError
from portal.accounts.access import access_for
from portal.cloud import images, instances
from portal.cloud.errors import CloudError, NotFound
from portal.instances.forms import InstanceForm
from portal.live.hub import hub
from portal.web import arender

DETAIL_SECTIONS = ["instances/_section_overview.html"]


@login_required
async def instance_list(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    live = await hub()
    records = live.instances(frozenset({access.current}) if access.current else frozenset())
    return await arender(request, "instances/list.html", {
        "records": records,
        "can_operate": access.current is not None and access.can_operate(access.current),
    })


@login_required
@require_http_methods(["GET", "POST"])
async def instance_create(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    namespace = access.current
    if namespace is None or not access.can_operate(namespace):
        messages.error(request, "You may not create instances in this namespace.")
        return HttpResponseRedirect(reverse("instance-list"))
    names = sorted({image.name for image in await images.list_images(frozenset({namespace}))})
    form = InstanceForm(request.POST or None, images=names)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            record = await instances.create(instances.InstanceRequest(
                name=data["name"], cpus=data["cpus"], memory=data["memory"],
                disks=[instances.DiskRequest(size_gb=data["disk_size"], base=form.base)],
                namespace=namespace,
            ))
        except ValidationError as exc:
            form.add_error(None, str(exc))
        except CloudError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Instance {record.spec.name} is being created.")
            return HttpResponseRedirect(reverse("instance-list"))
    return await arender(request, "instances/create.html", {"form": form, "namespace": namespace},
                         status=400 if form.errors else 200)


async def _record_for(request: HttpRequest, uuid: UUID) -> tuple[instances.InstanceRecord, bool]:
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    return record, access.can_operate(record.spec.namespace)


@login_required
async def instance_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, can_operate = await _record_for(request, uuid)
    return await arender(request, "instances/detail.html", {
        "record": record,
        "can_operate": can_operate,
        # Each part of the page is its own template, in this order.
        "sections": DETAIL_SECTIONS,
    })


@login_required
@require_POST
async def instance_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, can_operate = await _record_for(request, uuid)
    if not can_operate:
        messages.error(request, "You may not delete instances in this namespace.")
    else:
        await instances.delete(record)
        messages.success(request, f"Instance {record.spec.name} is being deleted.")
    return HttpResponseRedirect(reverse("instance-list"))
