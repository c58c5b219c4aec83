"""The instance pages: the live list, the create form, detail and delete."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from cloudstate.validation import ValidationError
from portal.accounts.access import access_for, actor_for, namespace_choices
from portal.cloud import artifacts, instances, keypairs, networks, secgroups, usage
from portal.cloud.errors import CloudError, Conflict, Forbidden, NotFound
from portal.events.sections import events_context, events_query
from portal.formerrors import add_refusal
from portal.instances import bulk, detail
from portal.instances.forms import InstanceForm, SnapshotForm, TagForm
from portal.instances.listing import listing_for, ordered_page
from portal.live.hub import hub
from portal.networks.views import interfaces_context
from portal.web import arender

# The service's names for the create form's fields, where they differ.
CREATE_FIELDS = {"disk size": "disk_size", "network": "networks", "user_data": "user_data",
                 "ssh_key": "ssh_key", "keypair": "keypair", "cpus": "cpus", "memory": "memory",
                 # Quotas (cloudstate.quotas) by the field that asks for them.
                 "instances": "name", "vcpus": "cpus", "memory_mib": "memory",
                 "disk_gb": "disk_size", "floating_addresses": "networks"}

@login_required
async def instance_list(request: HttpRequest) -> HttpResponse:
    """One page of the instances in scope, as asked (portal.listing): the
    rows come from the live hub's mirror and only the page is rendered."""
    access = await access_for(request)
    live = await hub()
    listing = listing_for(access.all_namespaces)
    page, controls = ordered_page(live, access.scope, access.all_namespaces,
                                  listing.read(request.GET))
    figures = usage.instance_figures(
        await usage.summaries(row.record.spec.node for row in page.rows))
    return await arender(request, "instances/list.html", {
        **listing.view_context([], page, controls),
        "can_operate": access.can_operate_here,
        "show_namespace": access.all_namespaces,
        "usage": figures,
        "bulk_actions": bulk.CHOICES,
    }, status=400 if page.query.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
async def instance_create(request: HttpRequest) -> HttpResponse:
    access, actor = await actor_for(request)
    if not access.can_operate_here:
        raise PermissionDenied("Your role here is viewer: you may not create instances.")
    # With "All namespaces" chosen, the form asks which one.
    choices = sorted(ns for ns in await namespace_choices(access.memberships)
                     if access.can_operate(ns)) if access.all_namespaces else None
    namespace = access.current
    visible_images = frozenset(choices) if choices is not None else frozenset({namespace})
    names = sorted({record.spec.name for record in await artifacts.list_records(visible_images)
                    if record.spec.type != "label" and record.state != "error"})
    keys = await keypairs.list_keypairs(visible_images)
    # A NIC goes on a network of the instance's own namespace: with all
    # namespaces shown, each network says whose it is.
    nets = [(r.uuid, (f"{r.spec.namespace}/" if choices is not None else "")
             + f"{r.spec.name} ({r.spec.netblock})")
            for r in await networks.list_networks(visible_images)
            if r.spec.desired != "deleted"]
    if namespace is not None and choices is None:
        await secgroups.ensure_default(namespace)
    groups = [(r.uuid, (f"{r.spec.namespace}/" if choices is not None else "") + r.spec.name)
              for r in await secgroups.list_groups(visible_images)]
    initial = {"image": request.GET["image"]} if request.GET.get("image") in names else None
    form = InstanceForm(request.POST or None, request.FILES or None, images=names,
                        namespaces=choices, keypairs=keys, networks=nets,
                        security_groups=groups, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        namespace = data.get("namespace") or namespace
        ssh_key, keypair = form.ssh_key_and_keypair
        try:
            record = await instances.create(actor, namespace, instances.InstanceRequest(
                name=data["name"], cpus=data["cpus"], memory=data["memory"],
                disks=[instances.DiskRequest(size_gb=data["disk_size"], base=form.base,
                                             bus=data["disk_bus"])],
                ssh_key=ssh_key, keypair=keypair, user_data=data["user_data_b64"],
                networks=form.nics, uefi=form.uefi, secure_boot=form.secure_boot,
            ))
        except Conflict as exc:
            add_refusal(form, exc, CREATE_FIELDS, default="name")
        except (ValidationError, CloudError) as exc:
            add_refusal(form, exc, {**CREATE_FIELDS, "base": form.base_field})
        else:
            messages.success(request, f"Instance {record.spec.name} is being created.")
            return HttpResponseRedirect(reverse("instance-list"))
    return await arender(request, "instances/create.html", {"form": form, "namespace": namespace},
                         status=400 if form.errors else 200)


async def _record_for(request: HttpRequest, uuid: UUID) -> tuple[instances.InstanceRecord, bool]:
    """The instance if the person may see it; 404 otherwise, never 403."""
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
    except NotFound:
        raise Http404("No such instance") from None
    return record, access.can_operate(record.spec.namespace)


@login_required
async def instance_detail(request: HttpRequest, uuid: UUID,
                          tab: str = detail.DEFAULT_TAB) -> HttpResponse:
    """The instance's page, showing one of its tabs (all are in the page)."""
    record, can_operate = await _record_for(request, uuid)
    return await detail_page(request, record, can_operate, tab)


async def detail_page(request: HttpRequest, record: instances.InstanceRecord,
                      can_operate: bool, tab: str, *, status: int = 200,
                      tag_form: TagForm | None = None,
                      snapshot_form: SnapshotForm | None = None) -> HttpResponse:
    """The page with ``tab`` showing; a form given is shown as it was sent
    (with its errors beside its fields)."""
    events = events_query(request.GET)
    devices = detail.snapshot_devices(record)
    return await arender(request, "instances/detail.html", {
        **await interfaces_context(record, can_operate),
        **await detail.section_context(record, can_operate=can_operate),
        **await events_context("instance", record.uuid, events,
                               here=reverse("instance-tab", args=[record.uuid, "events"])),
        "tag_form": tag_form or TagForm(),
        "snapshot_form": snapshot_form or SnapshotForm(devices=devices),
        "tabs": list(detail.TABS.values()),
        "tab": detail.TABS[tab],
        "events_query": events.urlencode(),
    }, status=400 if events.errors else status)


@login_required
@require_POST
async def instance_delete(request: HttpRequest, uuid: UUID) -> HttpResponse:
    record, _ = await _record_for(request, uuid)
    _, actor = await actor_for(request)
    try:
        await instances.delete(actor, record)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    messages.success(request, f"Instance {record.spec.name} is being deleted.")
    return HttpResponseRedirect(reverse("instance-list"))
