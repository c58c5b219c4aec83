"""A service's refusal, put beside the form field it is about.

The services (portal.cloud, portal.accounts) refuse with the API's words:
a ValidationError names its field, and a CloudError's message often starts
with one ("password: ...", "base: ..."). A page shows the message next to
that field, without the field's internal name, as a sentence; anything
that names no field of the form goes above it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from django import forms

from cloudstate.validation import ValidationError
from portal.cloud.errors import CloudError, QuotaExceeded
from portal.errors import sentence

_PREFIX = re.compile(r"([a-z][a-z0-9_. \[\]]{0,40}): (.+)", re.DOTALL)


def split_field(message: str) -> tuple[str | None, str]:
    """("password", "too short") from "password: too short"; (None, message)
    when it names no field."""
    found = _PREFIX.fullmatch(message)
    return (found.group(1), found.group(2)) if found else (None, message)


def add_refusal(form: forms.Form, exc: ValidationError | CloudError,
                fields: Mapping[str, str | None] | None = None,
                default: str | None = None) -> None:
    """Show ``exc`` on ``form``: beside the field it names (through
    ``fields``, the service's names for the form's fields, when they
    differ), else beside ``default`` (None: above the form)."""
    if isinstance(exc, ValidationError):
        named, message = exc.field, exc.message
    elif isinstance(exc, QuotaExceeded):
        # "quota exceeded: vcpus limit 8, ...": all of it, beside the field of that kind.
        named, message = exc.kind, exc.message
    else:
        named, message = split_field(exc.message)
    mapping = dict(fields or {})
    # "network[1].address" is about the networks, "video.model" about the video.
    base = re.split(r"[\[.]", named, maxsplit=1)[0] if named else None
    for name in (named, base):
        if name is not None and name in mapping:
            target = mapping[name]
            break
        if name is not None and name in form.fields:
            target = name
            break
    else:
        target = default
    if target is not None and target not in form.fields:
        target = None
    form.add_error(target, sentence(message))


def message_of(exc: ValidationError | CloudError) -> str:
    """The refusal as a sentence, without a field's internal name."""
    message = exc.message if isinstance(exc, ValidationError) else split_field(exc.message)[1]
    return sentence(message)
