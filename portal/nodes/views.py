"""The nodes page: each hypervisor, whether it is up, and what it carries."""

from __future__ import annotations

from urllib.parse import quote

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse

from portal.accounts.access import access_for
from portal.cloud import nodes, scheduler, store, usage
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
    if not (await access_for(request)).is_system:
        raise PermissionDenied("Only members of the system namespace may see nodes.")
    loads = await scheduler.snapshot(store.keys())
    for record in await nodes.list_nodes():
        if record.info.name == name:
            return await arender(request, "nodes/detail.html", {
                "record": record, "load": loads.get(name), "name_in_path": quote(name, safe=""),
                **await events_context("node", name, events_query(request.GET),
                                  here=request.path),
            })
    raise Http404("No such node")
