"""Acting on several instances at once, from the list.

The list's form sends an action and the instances ticked. The answer is a
page naming each of them and saying what the action does (nothing is done
yet); confirming there does it, one instance at a time through the same
services a single action uses, and says what was done and what was refused
and why. Instances the person may not see are simply not found.
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from cloudstate import power as power_rules
from cloudstate.validation import ValidationError
from portal.accounts.access import actor_for
from portal.cloud import instances, power
from portal.cloud.errors import CloudError, NotFound
from portal.errors import sentence
from portal.web import arender, safe_next

DELETE = "delete"
CHOICES = [("on", "Power on"), ("rebootsoft", "Reboot"), ("pause", "Pause"),
           ("unpause", "Unpause"), ("reboothard", "Hard reboot"), ("off", "Power off"),
           (DELETE, "Delete")]
EFFECTS = {
    "on": "Each is started.",
    "rebootsoft": "Each guest is asked to restart cleanly (as pressing Ctrl-Alt-Del).",
    "pause": "Each guest is frozen where it is, its memory kept, until unpaused.",
    "unpause": "Each paused guest carries on where it stopped.",
    "reboothard": "Each guest is reset at once, without shutting down: anything it has not "
                  "written to disk is lost.",
    "off": "Each guest is switched off at once, as if its plug were pulled: anything it has "
           "not written to disk is lost.",
    DELETE: "Each is powered off and its disks are destroyed. This cannot be undone.",
}
DANGEROUS = frozenset({"reboothard", "off", DELETE})
MAX_INSTANCES = 500


@login_required
@require_POST
async def bulk_action(request: HttpRequest) -> HttpResponse:
    access, actor = await actor_for(request)
    back = safe_next(request, reverse("instance-list"))
    action = request.POST.get("action", "")
    labels = dict(CHOICES)
    problem = ""
    given = request.POST.getlist("uuid")[:MAX_INSTANCES + 1]
    if action not in labels:
        problem = "Choose what to do with the selected instances."
    elif not given:
        problem = "No instance was selected: tick the ones to act on, then choose the action."
    elif len(given) > MAX_INSTANCES:
        problem = f"Act on at most {MAX_INSTANCES} instances at once."
    records, missing = [], []
    for raw in dict.fromkeys(given):
        try:
            records.append(await instances.get(str(UUID(raw)), access.visible))
        except (ValueError, NotFound):
            missing.append(raw[:40])
    if given and not records:
        # As for one instance: what you may not see is simply not found.
        raise Http404("None of the selected instances exists (or you may not see them)")
    for record in records:
        if not access.can_operate(record.spec.namespace):
            raise PermissionDenied(f"Your role in {record.spec.namespace} is viewer: you may "
                                   f"not change {record.spec.name}.")
    context = {"action": action, "action_label": labels.get(action, ""),
               "effect": EFFECTS.get(action),
               "dangerous": action in DANGEROUS, "records": records, "missing": missing,
               "next": back, "problem": problem}
    if problem or request.POST.get("confirmed") != "yes":
        return await arender(request, "instances/bulk_confirm.html", context,
                             status=400 if problem else 200)
    done, refused = [], []
    for record in records:
        try:
            if action == DELETE:
                await instances.delete(actor, record)
            else:
                await power.request(actor, record, action)
        except (CloudError, ValidationError) as exc:
            refused.append(f"{record.spec.name} ({exc.message})")
        else:
            done.append(record.spec.name)
    verb = "being deleted" if action == DELETE else \
        f"{power_rules.LABELS[action].lower()} sent"
    if done:
        messages.success(request, f"{len(done)} {'instance' if len(done) == 1 else 'instances'}"
                                  f" {verb}: {', '.join(done)}.")
    if refused:
        messages.warning(request, sentence("Not done for " + "; ".join(refused)))
    return HttpResponseRedirect(back)
