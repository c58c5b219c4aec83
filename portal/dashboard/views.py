"""The portal's home page: the dashboard (see sections for what it shows)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse

from portal.accounts.access import access_for
from portal.dashboard import sections
from portal.live.hub import hub
from portal.web import arender


@login_required
async def home(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    return await arender(request, "dashboard/home.html", {
        **await sections.context(await hub(), access),
        "sections": sections.LIVE_SECTIONS,
    })
