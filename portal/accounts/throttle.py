"""Limits on failed log-ins and key checks, held in the database so every
portal process counts the same failures.

Two counters apply at once: one per account (a slow guess at one password
from many addresses) and one per client address (one address trying many
accounts). Either being over its limit refuses the attempt before any
password is checked, with a message saying when to try again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from portal.accounts.models import LoginFailure


@dataclass(frozen=True)
class Refusal:
    retry_after: int  # seconds
    message: str
    # Which limit refused it: the audit trail counts refusals on one row per
    # account, or per address, and window.
    per: str = "account"  # or "address"

    @property
    def audit_same(self) -> tuple[str, ...]:
        return ("object_name",) if self.per == "account" else ("source",)


def _window() -> timedelta:
    return timedelta(seconds=settings.LOGIN_FAILURE_WINDOW)


def _wait_message(what: str, seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed attempts {what}. Try again in {minutes} {unit}."


def check(username: str, source: str | None, *, account_limit: int | None = None,
          account_name: str = "account") -> Refusal | None:
    """Whether a new attempt must be refused now (sync: forms call it).
    ``username`` is the account counted against (a person, or "api:<ns>"
    for a namespace's keys, which get a limit of their own: high enough that
    a stranger's wrong keys rarely lock out the namespace's automation, low
    enough that guesses spread over many addresses stay few)."""
    since = timezone.now() - _window()
    recent = LoginFailure.objects.filter(when__gte=since)
    for queryset, limit, what, per in (
        (recent.filter(username=username.lower()),
         account_limit or settings.LOGIN_FAILURES_PER_USER, f"for this {account_name}",
         "account"),
        (recent.filter(source=source) if source else recent.none(),
         settings.LOGIN_FAILURES_PER_ADDRESS, "from your address", "address"),
    ):
        count = queryset.count()
        if count >= limit:
            # Attempts are allowed again once enough failures have aged out
            # of the window to bring the count below the limit.
            freeing = queryset.order_by("when")[count - limit].when
            retry = max(1, math.ceil((freeing + _window() - timezone.now()).total_seconds()))
            return Refusal(retry_after=retry, message=_wait_message(what, retry), per=per)
    return None


def failed(username: str, source: str | None) -> None:
    LoginFailure.objects.create(username=username.lower()[:200], source=source)
    # Old failures count for nothing; drop them so the table stays small.
    LoginFailure.objects.filter(when__lt=timezone.now() - 2 * _window()).delete()


def succeeded(username: str) -> None:
    """A right password clears the account's count, not the address's."""
    LoginFailure.objects.filter(username=username.lower()).delete()
