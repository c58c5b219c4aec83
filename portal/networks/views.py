"""The network pages: the list, the create form, a network with its
interfaces and delete; and the interfaces section of an instance's page with
its float, defloat, add (hot plug) and remove buttons. They use the services the API uses, so a
refusal reads the same in both."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate import states
from cloudstate.validation import ValidationError
from portal.accounts.access import access_for, actor_for
from portal.accounts.actor import Actor
from portal.cloud import filtering, hotplug, instances, interfaces, networks, secgroups
from portal.cloud.errors import CloudError, Conflict, Forbidden, NotFound, QuotaExceeded
from portal.events.sections import events_context, events_query
from portal.formerrors import add_refusal
from portal.networks.forms import InterfaceGroupsForm, NetworkForm, PlugForm
from portal.networks.listing import NETWORKS
from portal.web import arender, change_and_go


def list_context(records: list[networks.NetworkRecord], access: Any,
                 params: Mapping[str, Any]) -> dict[str, Any]:
    """The list's page as asked (portal.listing), for the page and its websocket."""
    page = NETWORKS.page(records, NETWORKS.read(params))
    return {**NETWORKS.view_context(records, page), "list_label": "networks",
            "all_namespaces": access.all_namespaces,
            "can_operate": access.current is not None and access.can_operate(access.current)}


@login_required
async def network_list(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    records = await networks.list_networks(access.scope)
    context = list_context(records, access, request.GET)
    return await arender(request, "networks/list.html", context,
                         status=400 if context["page"].query.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
async def network_create(request: HttpRequest) -> HttpResponse:
    access, actor = await actor_for(request)
    namespace = access.current
    if namespace is None:
        messages.error(request, "Pick the namespace the network is for first (top bar).")
        return HttpResponseRedirect(reverse("network-list"))
    if not access.can_operate(namespace):
        raise PermissionDenied("Your role here is viewer: you may not create networks.")
    form = NetworkForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            record = await networks.create(actor, namespace, networks.NetworkRequest(
                name=data["name"], netblock=data["netblock"],
                provide_dhcp=data["provide_dhcp"], provide_nat=data["provide_nat"],
                provide_dns=data["provide_dns"]))
        except ValidationError as exc:
            add_refusal(form, exc)
        except (Conflict, QuotaExceeded) as exc:
            add_refusal(form, exc, default="name")
        except CloudError as exc:
            add_refusal(form, exc)
        else:
            messages.success(request, f"Network {record.spec.name} is being created.")
            return HttpResponseRedirect(reverse("network-detail", args=[record.uuid]))
    return await arender(request, "networks/create.html", {"form": form, "namespace": namespace},
                         status=400 if form.errors else 200)


async def _network_for(request: HttpRequest, uuid: UUID) -> tuple[networks.NetworkRecord, Any]:
    access = await access_for(request)
    try:
        record = await networks.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such network") from None
    return record, access


async def detail_context(record: networks.NetworkRecord) -> dict[str, Any]:
    """What the page's live parts (overview and interfaces) need, for the
    page and for its websocket."""
    views = await interfaces.views(record.interfaces)
    names = {}
    for view in views:
        try:
            names[view["instance_uuid"]] = (await instances.get(view["instance_uuid"], None)) \
                .spec.name
        except NotFound:
            names[view["instance_uuid"]] = view["instance_uuid"]
    return {"record": record,
            "interfaces": [(view, names[view["instance_uuid"]]) for view in views]}


@login_required
async def network_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _network_for(request, uuid)
    return await arender(request, "networks/detail.html", {
        **await detail_context(record),
        "can_operate": access.can_operate(record.spec.namespace),
        "deletable": record.spec.desired != "deleted",
        **await events_context("network", record.uuid, events_query(request.GET),
                                  here=request.path),
    })


@login_required
@require_POST
async def network_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, access = await _network_for(request, uuid)

    def said(deleted: networks.NetworkRecord) -> str:
        waiting = " once its instances are gone" if deleted.state == states.DELETE_WAIT else ""
        return f"Network {record.spec.name} is being deleted{waiting}."

    return await change_and_go(
        request, networks.delete(access.actor(request), record), said=said,
        done_url=reverse("network-list"),
        refused_url=reverse("network-detail", args=[record.uuid]))


# --- an instance's interfaces -------------------------------------------------------------


async def _instance_for(request: HttpRequest, uuid: UUID) -> tuple[instances.InstanceRecord,
                                                                   bool]:
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    return record, access.can_operate(record.spec.namespace)


async def interfaces_context(record: instances.InstanceRecord, can_operate: bool,
                             sent: InterfaceGroupsForm | PlugForm | None = None
                             ) -> dict[str, Any]:
    """What the instance page's interfaces section shows (also sent by the
    page's websocket): each NIC with its network, its security groups, what
    its hypervisor has in force and the form that changes its groups, and
    the form that adds a NIC (``sent``, with its problems, in place of the
    form it was sent from)."""
    views = await interfaces.views(await interfaces.of_instance(record.spec))
    found = {n.uuid: n for n in await networks.list_networks(None, include_deleted=True)}
    choices = await _group_choices(record.spec.namespace)
    rows = []
    for view in views:
        names = view["filtering"]["group_names"] if view["filtering"] else {}
        prefix = f"eth{view['order']}"
        form = sent if isinstance(sent, InterfaceGroupsForm) and sent.prefix == prefix \
            else InterfaceGroupsForm(prefix=prefix, groups=choices, initial={
                "security_groups": view["security_groups"],
                "filtering_off": not view["port_security"]})
        rows.append((view, found.get(view["network_uuid"]),
                     [(uuid, names.get(uuid, uuid)) for uuid in view["security_groups"]],
                     form))
    pluggable = _pluggable(found.values(), record)
    return {
        "record": record, "rows": rows,
        "interfaces_editable": can_operate and states.is_active(record.spec),
        "floating_available": networks.floating_pool() is not None,
        "plug_form": sent if isinstance(sent, PlugForm) else (
            PlugForm(networks=pluggable, groups=choices) if pluggable else None),
    }


async def _group_choices(namespace: str) -> list[tuple[str, str]]:
    return [(group.uuid, group.spec.name) for group in await secgroups.of_namespace(namespace)]


def _pluggable(found: Iterable[networks.NetworkRecord],
               record: instances.InstanceRecord) -> list[tuple[str, str]]:
    """The networks a NIC may be added on: the instance's namespace's, not deleted."""
    return [(n.uuid, f"{n.spec.name} ({n.spec.netblock})")
            for n in sorted(found, key=lambda n: n.spec.name)
            if n.spec.namespace == record.spec.namespace and n.spec.desired != "deleted"]


async def _interfaces_section(request: HttpRequest, record: instances.InstanceRecord,
                              can_operate: bool, error: str | None = None, *,
                              sent: InterfaceGroupsForm | PlugForm | None = None
                              ) -> HttpResponse:
    return await arender(request, "networks/_instance_interfaces.html", {
        **await interfaces_context(record, can_operate, sent), "error": error},
        status=400 if sent is not None and sent.errors else 200)


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
    change = interfaces.float_interface if floating else interfaces.defloat_interface
    error = None
    try:
        await change(access.actor(request), found)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except CloudError as exc:
        error = exc.message
    return await _interfaces_section(request, record, True, error)


async def _plug(request: HttpRequest, uuid: UUID,
                change: Callable[[Actor, instances.InstanceRecord], Awaitable[object]]
                ) -> HttpResponse:
    """Run a hot plug change on the instance; the section again, saying why
    if the service refused."""
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    error = None
    try:
        await change(access.actor(request), record)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except (CloudError, ValidationError) as exc:
        error = getattr(exc, "message", str(exc))
    fresh = await instances.get(str(uuid), access.visible)
    return await _interfaces_section(request, fresh, True, error)


# The plug form's field for each part of a NIC the service names.
PLUG_FIELDS = {"network": "network", "network[0]": "network",
               "network[0].network_uuid": "network", "network[0].address": "network",
               "network[0].security_groups": "security_groups"}


@login_required
@require_POST
async def instance_interface_add(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """Hot-plug a NIC on the network the form names, in the groups ticked
    (none: the namespace's default, as at create); the section again, with
    a refusal beside the field it is about."""
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    found = await networks.list_networks(None)
    form = PlugForm(request.POST, networks=_pluggable(found, record),
                    groups=await _group_choices(record.spec.namespace))
    if form.is_valid():
        nic = interfaces.NicRequest(network=form.cleaned_data["network"],
                                    security_groups=form.cleaned_data["security_groups"] or None)
        try:
            await hotplug.attach(access.actor(request), record, nic)
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None
        except (CloudError, ValidationError) as exc:
            add_refusal(form, exc, PLUG_FIELDS, default="network")
        else:
            return await _interfaces_section(
                request, await instances.get(str(uuid), access.visible), True)
    return await _interfaces_section(request, await instances.get(str(uuid), access.visible),
                                     True, sent=form)


@login_required
@require_POST
async def instance_interface_remove(request: HttpRequest, uuid: UUID,
                                    interface: UUID) -> HttpResponse:
    return await _plug(request, uuid, lambda actor, record: hotplug.detach(
        actor, record, str(interface)))


@login_required
@require_POST
async def interface_float(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return await _change_float(request, uuid, True)


@login_required
@require_POST
async def interface_defloat(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return await _change_float(request, uuid, False)


@login_required
@require_POST
async def interface_security_groups(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """The interface's groups as ticked, or filtering off; the section again
    (with the form's problems beside its fields, and what was ticked kept)."""
    access = await access_for(request)
    try:
        found = await interfaces.get(str(uuid), access.visible)
        record = await instances.get(found.spec.instance_uuid, access.visible)
    except NotFound:
        raise Http404("No such interface") from None
    choices = [(group.uuid, group.spec.name)
               for group in await secgroups.of_namespace(found.spec.namespace)]
    form = InterfaceGroupsForm(request.POST, prefix=f"eth{found.spec.order}", groups=choices)
    if form.is_valid():
        actor = access.actor(request)
        try:
            if form.cleaned_data["filtering_off"]:
                await filtering.set_port_security(actor, found, False)
            else:
                if not found.spec.port_security:
                    await filtering.set_port_security(actor, found, True)
                    found = await interfaces.get(str(uuid), access.visible)
                await filtering.set_security_groups(actor, found,
                                                    form.cleaned_data["security_groups"])
        except Forbidden as exc:
            raise PermissionDenied(exc.message) from None
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, {"security_groups": "security_groups",
                                    "port_security": "filtering_off"}, default="security_groups")
        else:
            return await _interfaces_section(request, record, True)
    return await _interfaces_section(request, record, True, sent=form)
