"""The audit trail page: every audited change, filtered by its closed
vocabularies (action, kind, door, outcome), a person, a namespace, an
object or dates. A namespace admin reads their own namespaces' rows only."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.accounts.access import Access
from portal.accounts.models import AuditEvent
from portal.manage.common import manager
from portal.manage.forms import AuditFilter
from portal.web import arender

PAGE_SIZE = 50
# Filters that are one column's exact value.
_EXACT = {"namespace": "namespace", "action": "action", "kind": "object_kind", "via": "via",
          "outcome": "outcome"}


def filter_events(access: Access, data: dict[str, Any]) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if access.administered is not None:
        events = events.filter(namespace__in=access.administered)
    if data.get("actor"):
        events = events.filter(actor__icontains=data["actor"])
    for name, column in _EXACT.items():
        if data.get(name):
            events = events.filter(**{column: data[name]})
    if data.get("object"):
        term = data["object"]
        events = events.filter(Q(object_kind=term) | Q(object_id=term)
                               | Q(object_name__icontains=term))
    tz = timezone.get_current_timezone()
    if data.get("since"):
        events = events.filter(when__gte=datetime.combine(data["since"], time.min, tz))
    if data.get("until"):
        events = events.filter(when__lte=datetime.combine(data["until"], time.max, tz))
    return events


@login_required
@require_GET
async def audit_list(request: HttpRequest) -> HttpResponse:
    access = await manager(request)
    form = AuditFilter(request.GET or None)
    data = form.cleaned_data if form.is_valid() else {}

    @sync_to_async
    def page() -> Any:
        paginator = Paginator(filter_events(access, data), PAGE_SIZE)
        found = paginator.get_page(request.GET.get("page"))
        found.object_list = list(found.object_list)
        return found

    query = request.GET.copy()
    query.pop("page", None)
    return await arender(request, "manage/audit.html", {
        "form": form, "page": await page(), "query": query.urlencode(), "tab": "audit",
    }, status=400 if form.errors else 200)
