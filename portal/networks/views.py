"""The network pages: the list, the create form, a network with its
interfaces and delete; and the interfaces section of an instance's page with
its float and defloat buttons. They use the services the API uses, so a
refusal reads the same in both."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate import states
from cloudstate.validation import ValidationError
from portal.accounts.access import Access, access_for
from portal.cloud import instances, interfaces, networks
from portal.cloud.errors import CloudError, NotFound
from portal.networks.forms import NetworkForm
from portal.web import arender


def _current(access: Access) -> frozenset[str]:
    return frozenset({access.current}) if access.current else frozenset()


@login_required
async def network_list(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    records = await networks.list_networks(_current(access))
    return await arender(request, "networks/list.html", {
        "records": records,
        "can_operate": access.current is not None and access.can_operate(access.current),
    })


@login_required
@require_http_methods(["GET", "POST"])
async def network_create(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    namespace = access.current
    if namespace is None or not access.can_operate(namespace):
        messages.error(request, "You may not create networks in this namespace.")
        return HttpResponseRedirect(reverse("network-list"))
    form = NetworkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            record = await networks.create(networks.parse_request({
                "name": data["name"], "netblock": data["netblock"],
                "provide_dhcp": data["provide_dhcp"], "provide_nat": data["provide_nat"],
                "provide_dns": data["provide_dns"],
            }, namespace))
        except ValidationError as exc:
            form.add_error("netblock" if exc.field == "netblock" else None, str(exc))
        except CloudError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Network {record.spec.name} is being created.")
            return HttpResponseRedirect(reverse("network-detail", args=[record.uuid]))
    return await arender(request, "networks/create.html", {"form": form, "namespace": namespace},
                         status=400 if form.errors else 200)


async def _network_for(request: HttpRequest, uuid: UUID) -> tuple[networks.NetworkRecord, bool]:
    access = await access_for(request)
    try:
        record = await networks.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such network") from None
    return record, access.can_operate(record.spec.namespace)


@login_required
async def network_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, can_operate = await _network_for(request, uuid)
    views = await interfaces.views(record.interfaces)
    names = {}
    for view in views:
        try:
            names[view["instance_uuid"]] = (await instances.get(view["instance_uuid"], None)) \
                .spec.name
        except NotFound:
            names[view["instance_uuid"]] = view["instance_uuid"]
    return await arender(request, "networks/detail.html", {
        "record": record,
        "can_operate": can_operate,
        "interfaces": [(view, names[view["instance_uuid"]]) for view in views],
        "deletable": record.spec.desired != "deleted",
    })


@login_required
@require_POST
async def network_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, can_operate = await _network_for(request, uuid)
    if not can_operate:
        messages.error(request, "You may not delete networks in this namespace.")
        return HttpResponseRedirect(reverse("network-detail", args=[record.uuid]))
    try:
        deleted = await networks.delete(record)
    except CloudError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("network-detail", args=[record.uuid]))
    waiting = " once its instances are gone" if deleted.state == states.DELETE_WAIT else ""
    messages.success(request, f"Network {record.spec.name} is being deleted{waiting}.")
    return HttpResponseRedirect(reverse("network-list"))


# --- an instance's interfaces -------------------------------------------------------------


async def _instance_for(request: HttpRequest, uuid: UUID) -> tuple[instances.InstanceRecord,
                                                                   bool]:
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    return record, access.can_operate(record.spec.namespace)


async def _interfaces_section(request: HttpRequest, record: instances.InstanceRecord,
                              can_operate: bool, error: str | None = None) -> HttpResponse:
    views = await interfaces.views(await interfaces.of_instance(record.spec))
    found = {n.uuid: n for n in await networks.list_networks(None, include_deleted=True)}
    rows = [(view, found.get(view["network_uuid"])) for view in views]
    return await arender(request, "networks/_instance_interfaces.html", {
        "record": record, "rows": rows, "error": error,
        "can_operate": can_operate and states.is_active(record.spec),
        "floating_available": networks.floating_pool() is not None,
    })


@login_required
async def instance_interfaces(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, can_operate = await _instance_for(request, uuid)
    return await _interfaces_section(request, record, can_operate)


async def _change_float(request: HttpRequest, uuid: UUID, floating: bool) -> HttpResponse:
    access = await access_for(request)
    try:
        found = await interfaces.get(str(uuid), access.visible)
        record = await instances.get(found.spec.instance_uuid, access.visible)
    except NotFound:
        raise Http404("No such interface") from None
    can_operate = access.can_operate(record.spec.namespace)
    error = None
    if not can_operate:
        error = "You may not change interfaces in this namespace."
    else:
        try:
            if floating:
                await interfaces.float_interface(found)
            else:
                await interfaces.defloat_interface(found)
        except CloudError as exc:
            error = exc.message
    return await _interfaces_section(request, record, can_operate, error)


@login_required
@require_POST
async def interface_float(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return await _change_float(request, uuid, True)


@login_required
@require_POST
async def interface_defloat(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return await _change_float(request, uuid, False)
