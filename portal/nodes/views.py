"""The nodes page: each hypervisor, whether it is up, and what it carries;
a node's page, and deleting a node that is gone for good; and, for system
admins, join tokens: the command a new machine joins the cloud with."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudstate.validation import ValidationError
from portal.accounts.access import access_for
from portal.accounts.models import SYSTEM_NAMESPACE
from portal.api import shapes
from portal.cloud import jointokens, nodes, scheduler, store, usage
from portal.cloud.errors import CloudError, Forbidden, NotFound
from portal.events.sections import events_context, events_query
from portal.formerrors import add_refusal
from portal.web import arender, change_and_go


class JoinTokenForm(forms.Form):
    """A join token for a new machine (system admins, on the Nodes page)."""

    etcd = forms.BooleanField(label="Also an etcd member", required=False,
                              help_text="It joins etcd as a learner, then votes once caught up.")
    valid_minutes = forms.IntegerField(
        label="Valid for (minutes)", required=False, min_value=jointokens.MIN_TTL // 60,
        max_value=jointokens.MAX_TTL // 60,
        help_text=f"Used once; default {settings.JOIN_TOKEN_TTL // 60} minutes.")


@login_required
async def node_list(request: HttpRequest) -> HttpResponse:
    return await _node_list(request, JoinTokenForm())


async def _node_list(request: HttpRequest, form: JoinTokenForm,
                     made: dict[str, Any] | None = None) -> HttpResponse:
    # Nodes carry every namespace's instances: only system members see them,
    # as in the API.
    access = await access_for(request)
    if not access.is_system:
        raise PermissionDenied("Only members of the system namespace may see nodes.")
    loads = await scheduler.snapshot(store.keys())
    records = await nodes.list_nodes()
    found = await usage.summaries(record.info.name for record in records if record.alive)
    joining = access.is_system_admin
    tokens = await jointokens.list_tokens(access.actor(request)) if joining else []
    return await arender(request, "nodes/list.html", {
        "rows": [(record, loads.get(record.info.name)) for record in records],
        "figures": {name: summary.get("node") for name, summary in found.items()},
        "can_join": joining, "form": form, "made": made,
        "tokens": [shapes.join_token(record) for record in tokens],
    }, status=400 if form.errors else 200)


@login_required
@require_POST
async def join_token_create(request: HttpRequest) -> HttpResponse:
    """A join token, shown this once with the command for the new machine
    (the page is answered directly: the secret never goes into a session)."""
    access = await access_for(request)
    if not access.is_system_admin:
        raise PermissionDenied("Only admins of the system namespace may make join tokens.")
    form = JoinTokenForm(request.POST)
    if not form.is_valid():
        return await _node_list(request, form)
    minutes = form.cleaned_data["valid_minutes"]
    try:
        wanted = jointokens.asked({"etcd": form.cleaned_data["etcd"],
                                   **({"ttl": minutes * 60} if minutes is not None else {})})
        made = await jointokens.create(access.actor(request), wanted)
    except (ValidationError, CloudError) as exc:
        add_refusal(form, exc, fields={"ttl": "valid_minutes"}, default=None)
        return await _node_list(request, form)
    return await _node_list(request, JoinTokenForm(), made=dict(
        shapes.made_join_token(made, jointokens.invitation(made.token))))


@login_required
@require_POST
async def join_token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    access = await access_for(request)
    return await change_and_go(
        request, jointokens.revoke(access.actor(request), token_id),
        said=f"Join token {token_id} is revoked.", done_url=reverse("node-list"),
        refused_url=reverse("node-list"), missing="No such join token")


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
    actor = (await access_for(request)).actor(request)

    async def delete() -> None:
        await nodes.delete(actor, await nodes.get(actor, name))

    return await change_and_go(
        request, delete(), said=f"Node {name} is deleted.", done_url=reverse("node-list"),
        refused_url=reverse("node-detail", args=[name]), missing="No such node")


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
