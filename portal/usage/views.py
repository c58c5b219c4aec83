"""The graphs' history, as JSON for the page's script (static/js/graphs.js):
an instance's for whoever may see it, a node's for members of system.

Errors come as ``{"error": ..., "status": N}`` like the API's: 400 for a
range that is not one, 404 for what the person can't see, 503 when the
node's agent does not answer.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse

from cloudstate.validation import ValidationError
from portal.accounts.access import access_for
from portal.cloud import instances, nodes, usage
from portal.cloud.errors import CloudError, Forbidden, NotFound


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "status": status}, status=status)


@login_required
async def instance_usage(request: HttpRequest, uuid: UUID) -> JsonResponse:
    access = await access_for(request)
    try:
        record = await instances.get(str(uuid), access.visible)
        return JsonResponse(await usage.instance_history(record, request.GET.get("range", "hour")))
    except ValidationError as exc:
        return _answer(400, str(exc))
    except CloudError as exc:
        return _answer(exc.status, exc.message)


async def require_node(access_is_system: bool, name: str) -> nodes.NodeRecord:
    """The node ``name`` for a member of system; Forbidden or NotFound otherwise."""
    if not access_is_system:
        raise Forbidden("Only members of the system namespace may see nodes.")
    for record in await nodes.list_nodes():
        if record.info.name == name:
            return record
    raise NotFound(f"node {name} not found")


@login_required
async def node_usage(request: HttpRequest, name: str) -> JsonResponse:
    access = await access_for(request)
    try:
        await require_node(access.is_system, name)
        return JsonResponse(await usage.node_history(name, request.GET.get("range", "hour")))
    except ValidationError as exc:
        return _answer(400, str(exc))
    except CloudError as exc:
        return _answer(exc.status, exc.message)
