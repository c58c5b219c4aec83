"""People and namespaces.

Namespaces own every cloud object (the objects themselves live in etcd and
carry their namespace's name). ``system`` is the administrators' namespace:
it sees and manages everything. API keys belong to a namespace, as in
Shaken Fist; only a keyed digest of each secret is stored.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from cloudstate.vocabulary import ObjectKind

SYSTEM_NAMESPACE = "system"


class Namespace(models.Model):
    name = models.CharField(max_length=63, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    metadata = models.JSONField(default=dict, blank=True)
    # "deleting" while a delete checks that nothing is left, so no new
    # object can be made in it meanwhile.
    state = models.CharField(max_length=16, default="created")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_system(self) -> bool:
        return self.name == SYSTEM_NAMESPACE


class Trust(models.Model):
    """``namespace`` trusts ``trusted``: callers of the trusted namespace may
    see it (Shaken Fist's namespace trust). ``system`` is trusted by every
    namespace implicitly and never has a row."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="trusts")
    trusted = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="trusted_by")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["namespace__name", "trusted__name"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "trusted"], name="trust_once"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace} trusts {self.trusted}"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"  # manage the namespace and its members
    MEMBER = "member", "Member"  # create and operate
    VIEWER = "viewer", "Viewer"  # read, and read-only consoles


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="memberships")
    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "namespace"], name="one_role_per_namespace")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.namespace} as {self.role}"


def new_nonce() -> str:
    return secrets.token_hex(16)


class ApiKey(models.Model):
    """A namespace's API key. ``digest`` is an HMAC of the secret keyed by
    the portal's secret, so a stolen database alone reveals no usable key,
    and a key is found by one indexed lookup rather than by trying a slow
    hash against every key of the namespace on each login."""

    namespace = models.ForeignKey(Namespace, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=63)
    digest = models.CharField(max_length=64)
    # Tokens carry the nonce they were issued under; rotating the key
    # changes it, which invalidates them at once.
    nonce = models.CharField(max_length=32, default=new_nonce)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["namespace__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["namespace", "name"], name="unique_key_name"),
            models.UniqueConstraint(fields=["namespace", "digest"], name="unique_key_secret"),
        ]

    def __str__(self) -> str:
        return f"{self.namespace.name}/{self.name}"


class PersonalToken(models.Model):
    """A person's own API token: it acts as that person, with their
    memberships and roles. Only a keyed digest of the secret is stored; the
    secret is shown once, when the token is made."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=63)
    digest = models.CharField(max_length=64, unique=True)
    # The first characters of the secret, so a person can tell tokens apart.
    prefix = models.CharField(max_length=16)
    # Where the token's requests act when they name no namespace.
    default_namespace = models.CharField(max_length=63, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    last_used = models.DateTimeField(null=True, blank=True)
    revoked = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"

    @property
    def state(self) -> str:
        if self.revoked is not None:
            return "revoked"
        return "expired" if self.expires <= timezone.now() else "active"


class AuditAction(models.TextChoices):
    """Everything the audit trail records someone doing. The power actions
    are spelled as the API's verbs (POST /instances/<ref>/<verb>)."""

    CREATE = "create"
    DELETE = "delete"
    CACHE = "cache"  # an image, fetched onto every node ahead of time
    UPLOAD = "upload"  # bytes sent to become an artifact's version
    LABEL = "label"  # a label pointed at a blob
    DELETE_VERSION = "delete-version"  # one version of an artifact
    SET_MAX_VERSIONS = "set-max-versions"
    SHARE = "share"  # an artifact, with every namespace
    UNSHARE = "unshare"
    SNAPSHOT = "snapshot"
    SET_METADATA = "set-metadata"
    SET_QUOTA = "set-quota"  # a namespace's limits
    DELETE_METADATA = "delete-metadata"
    FLOAT = "float"
    DEFLOAT = "defloat"
    CLEAR_LOG = "clear-log"  # an instance's serial console log
    POWERON = "poweron"
    POWEROFF = "poweroff"
    PAUSE = "pause"
    UNPAUSE = "unpause"
    REBOOTSOFT = "rebootsoft"
    REBOOTHARD = "reboothard"
    ROTATE = "rotate"  # a key's secret
    ENABLE = "enable"
    DISABLE = "disable"
    RESET_PASSWORD = "reset-password"  # noqa: S105 - an action's name, not a password
    CHANGE_PASSWORD = "change-password"  # noqa: S105 - a person's own
    SET_ROLE = "set-role"
    REMOVE = "remove"  # a membership
    REVOKE = "revoke"  # a personal token
    LOGIN = "login"
    OPEN = "open"  # a console
    END = "end"  # someone else's console
    ADD_RULES = "add-rules"  # to a security group
    REMOVE_RULE = "remove-rule"
    UPDATE = "update"  # an address set's CIDRs
    SET_SECURITY_GROUPS = "set-security-groups"  # an interface's
    SET_PORT_SECURITY = "set-port-security"
    SET_ALLOWED_ADDRESSES = "set-allowed-addresses"
    TRUST = "trust"  # a namespace lets another see it
    UNTRUST = "untrust"
    ATTACH = "attach"  # an interface, hot-plugged into an instance
    DETACH = "detach"
    ROUTE = "route"  # an address of the floating network, routed to a network
    UNROUTE = "unroute"
    SET_DNS = "set-dns"  # a name a network's DNS answers
    DELETE_DNS = "delete-dns"
    PING = "ping"  # an address, from a network's router
    JOIN = "join"  # a join token, used by a new machine
    EXPIRE = "expire"  # a join token, seen past its expiry unused


class Via(models.TextChoices):
    """The door a change came through."""

    PAGE = "page"
    API = "api", "API"
    AGENT = "agent"
    SYSTEM = "system"  # the portal itself (housekeeping, commands)


OBJECT_KINDS = [(kind.value, kind.value) for kind in ObjectKind]


class AuditEvent(models.Model):
    """Who did what to which object, through which door and from where, and
    how it ended."""

    class Outcome(models.TextChoices):
        OK = "ok", "done"
        REFUSED = "refused", "refused"  # bad input, conflicts, missing objects
        DENIED = "denied", "denied"  # not allowed
        FAILED = "failed", "failed"  # the cloud could not do it

    when = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.CharField(max_length=200, db_index=True)
    namespace = models.CharField(max_length=63, blank=True, db_index=True)
    action = models.CharField(max_length=40, db_index=True, choices=AuditAction.choices)
    object_kind = models.CharField(max_length=40, db_index=True, choices=OBJECT_KINDS)
    object_id = models.CharField(max_length=100, blank=True)
    object_name = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.OK)
    detail = models.TextField(blank=True)
    via = models.CharField(max_length=8, choices=Via.choices, blank=True)
    source = models.GenericIPAddressField(null=True, blank=True)  # the client's address
    # Failed and throttled log-ins are counted on one row per account or
    # address and window (a flood must not write a row per attempt): how
    # many there were, and when the last one came.
    repeats = models.PositiveIntegerField(default=1)
    last_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-when", "-id"]

    def __str__(self) -> str:
        return f"{self.when:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.object_kind}"


class LoginFailure(models.Model):
    """One failed log-in (or key check). Kept in the database, not in one
    process's memory, so the limit holds across every portal process."""

    username = models.CharField(max_length=200, db_index=True)
    source = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    when = models.DateTimeField(auto_now_add=True, db_index=True)
