"""The nodes page: each hypervisor, whether it is up, and what it carries;
a node's page, and deleting a node that is gone for good."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.accounts.access import access_for
from portal.accounts.models import SYSTEM_NAMESPACE
from portal.cloud import nodes, scheduler, store, usage
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.events.sections import events_context, events_query
from portal.web import arender


@login_required
async def node_list(request: HttpRequest) -> HttpResponse:
    # Nodes carry every namespace's instances: only system members see them,
    # as in the API.
    if not (await access_for(request)).is_system:
        raise PermissionDenied("Only members of the system namespace may see nodes.")
    loads = await scheduler.snapshot(store.keys())
    records = await nodes.list_nodes()
    found = await usage.summaries(record.info.name for record in records if record.alive)
    return await arender(request, "nodes/list.html", {
        "rows": [(record, loads.get(record.info.name)) for record in records],
        "figures": {name: summary.get("node") for name, summary in found.items()},
    })


@login_required
async def node_detail(request: HttpRequest, name: str) -> HttpResponse:
    access = await access_for(request)
    if not access.is_system:
        raise PermissionDenied("Only members of the system namespace may see nodes.")
    loads = await scheduler.snapshot(store.keys())
    for record in await nodes.list_nodes():
        if record.info.name == name:
            return await arender(request, "nodes/detail.html", {
                "record": record, "load": loads.get(name), "name_in_path": quote(name, safe=""),
                "can_delete": access.can_operate(SYSTEM_NAMESPACE) and not record.alive,
                "can_maintain": access.can_operate(SYSTEM_NAMESPACE),
                **await events_context("node", name, events_query(request.GET),
                                       here=request.path),
            })
    raise Http404("No such node")


@login_required
@require_POST
async def node_delete(request: HttpRequest, name: str) -> HttpResponse:
    """Forget a node gone for good (refused, with the reason, while it is online
    or still hosts instances)."""
    access = await access_for(request)
    try:
        record = await nodes.get(access.actor(request), name)
        await nodes.delete(access.actor(request), record)
    except NotFound:
        raise Http404("No such node") from None
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    except CloudError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(reverse("node-detail", args=[name]))
    messages.success(request, f"Node {name} is deleted.")
    return HttpResponseRedirect(reverse("node-list"))


@login_required
@require_POST
async def node_maintenance(request: HttpRequest, name: str) -> HttpResponse:
    """Put a node in maintenance (no new instances there) or take it out."""
    access = await access_for(request)
    wanted = request.POST.get("maintenance") == "on"
    try:
        record = await nodes.get(access.actor(request), name)
        await nodes.set_maintenance(access.actor(request), record, wanted)
    except NotFound:
        raise Http404("No such node") from None
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None
    messages.success(request, f"{name} is in maintenance: no new instances go there."
                     if wanted else f"{name} takes new instances again.")
    return HttpResponseRedirect(reverse("node-detail", args=[name]))
