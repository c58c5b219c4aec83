"""Failures the portal reports to users, each with the HTTP status Shaken
Fist's client expects for it. Pages show the same messages as the API."""

from __future__ import annotations


class CloudError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(CloudError):
    status = 400


class Unauthenticated(CloudError):
    status = 401


class Forbidden(CloudError):
    status = 403


class NotFound(CloudError):
    status = 404


class NotReady(CloudError):
    """406: Shaken Fist's client retries these until its deadline."""

    status = 406


class Conflict(CloudError):
    status = 409


class QuotaExceeded(CloudError):
    """403, as OpenStack answers a request over quota: more of ``kind`` is
    not allowed, whatever is retried (portal.cloud.quotas). Not a Forbidden:
    pages show it beside the form's field, as any other refusal of input."""

    status = 403

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class InsufficientResources(CloudError):
    status = 507


class TooManyRequests(CloudError):
    """429: too many failed attempts; the message says when to retry."""

    status = 429
