"""API key secrets, personal tokens, and the bearer tokens issued for them.

Two kinds of caller use the API:

- a namespace's **key**, Shaken Fist style: POST /auth {namespace, key}
  returns a signed, timestamped token "key K, nonce X". The nonce is checked
  against the key's current one on every request, so deleting or rotating
  the key ends every token issued from it at once. A key acts as an admin of
  its namespace.
- a person's **personal token** (made in the portal): sent directly as the
  bearer token, or traded at POST /auth {namespace, key: <token>} like a
  key. It acts as that person, with their memberships and roles as they are
  at the moment of each request; revoking it, its expiry, or disabling the
  person ends it at once.

Secrets are stored only as an HMAC keyed by the portal's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone

from portal.accounts.models import (
    SYSTEM_NAMESPACE,
    ApiKey,
    Membership,
    Namespace,
    PersonalToken,
    Role,
    new_nonce,
)
from portal.accounts.roles import RoleChecks
from portal.cloud.errors import BadRequest, Unauthenticated

log = logging.getLogger(__name__)

_TOKEN_SALT = "sfcloud.api-token"  # noqa: S105 - a signing salt, not a secret
# A namespace key is a password an automation types in: 16 characters at
# least, for new keys and new secrets. A shorter key set before this rule
# still works (only its digest is kept, so it can't be found out), and each
# use of one is logged, so that an operator rotates it.
MIN_SECRET_LENGTH = 16
PERSONAL_PREFIX = "sfp_"
# Writing last_used on every request would make each read a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def digest(secret: str) -> str:
    key = hashlib.sha256(("sfcloud.api-key:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def generate_secret() -> str:
    return secrets.token_urlsafe(32)


def check_secret(secret: object) -> str:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise BadRequest(f"key: a key must be a string of at least {MIN_SECRET_LENGTH} characters")
    if secret.startswith(PERSONAL_PREFIX):
        raise BadRequest(f"key: a namespace key may not start with {PERSONAL_PREFIX!r}")
    return secret


@dataclass(frozen=True)
class Principal(RoleChecks):
    """Who is calling the API: a namespace through one of its keys, or a
    person through one of their tokens.

    ``namespace`` is where requests act when they name none: the key's
    namespace, or the one the person's token was made (or traded) for.
    """

    namespace: str
    key_name: str | None = None
    username: str | None = None
    user_id: int | None = None
    token_id: int | None = None
    memberships: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.username is None and not self.memberships:
            object.__setattr__(self, "memberships", {self.namespace: Role.ADMIN})

    @property
    def name(self) -> str:
        """How the audit trail names this caller."""
        if self.username is not None:
            return self.username
        return f"key {self.namespace}/{self.key_name}"


# --- namespace keys --------------------------------------------------------------------------


def _issue(claims: dict[str, object]) -> tuple[str, int]:
    return signing.dumps(claims, salt=_TOKEN_SALT, compress=True), settings.API_TOKEN_LIFETIME


async def authenticate_key(namespace: object, secret: object) -> tuple[str, int]:
    """Check a namespace's key (or a person's token for a namespace they
    belong to); return a new bearer token and its lifetime."""
    if not isinstance(namespace, str) or not isinstance(secret, str) or not namespace:
        raise Unauthenticated("namespace and key must both be given")
    if secret.startswith(PERSONAL_PREFIX):
        token = await _personal_token(secret)
        principal = await _person(token, namespace)
        if namespace not in principal.memberships and not principal.is_system:
            raise Unauthenticated("unknown namespace or key")
        return _issue({"p": token.pk, "ns": namespace})
    try:
        key = await ApiKey.objects.select_related("namespace").aget(
            digest=digest(secret), namespace__name=namespace
        )
    except ApiKey.DoesNotExist:
        raise Unauthenticated("unknown namespace or key") from None
    await ApiKey.objects.filter(pk=key.pk).aupdate(last_used=timezone.now())
    if len(secret) < MIN_SECRET_LENGTH:
        log.warning("namespace %s: key %s is shorter than %d characters; give it a longer "
                    "secret (sf-client namespace update-key)", namespace, key.name,
                    MIN_SECRET_LENGTH)
    return _issue({"k": key.pk, "n": key.nonce})


async def principal_for_token(token: str) -> Principal:
    if token.startswith(PERSONAL_PREFIX):
        personal = await _personal_token(token)
        return await _person(personal, personal.default_namespace)
    try:
        claims = signing.loads(token, salt=_TOKEN_SALT, max_age=settings.API_TOKEN_LIFETIME)
    except signing.SignatureExpired:
        raise Unauthenticated("token expired") from None
    except signing.BadSignature:
        raise Unauthenticated("invalid token") from None
    if not isinstance(claims, dict):
        raise Unauthenticated("invalid token")
    if "p" in claims:
        try:
            personal = await PersonalToken.objects.select_related("user").aget(pk=claims["p"])
        except (PersonalToken.DoesNotExist, TypeError, ValueError):
            raise Unauthenticated("the token this was issued for no longer exists") from None
        _check_usable(personal)
        await _touch(personal)
        return await _person(personal, str(claims.get("ns", "")))
    try:
        key = await ApiKey.objects.select_related("namespace").aget(pk=claims["k"])
    except (ApiKey.DoesNotExist, KeyError, TypeError, ValueError):
        raise Unauthenticated("the key this token was issued for no longer exists") from None
    if not hmac.compare_digest(key.nonce, str(claims.get("n", ""))):
        raise Unauthenticated("the key this token was issued for has been changed")
    return Principal(namespace=key.namespace.name, key_name=key.name)


async def set_key(namespace: Namespace, name: str, secret: str) -> tuple[ApiKey, bool]:
    """Create a key, or give an existing one a new secret (ending its
    tokens). Returns the key and whether it is new."""
    secret = check_secret(secret)
    key = await ApiKey.objects.filter(namespace=namespace, name=name).afirst()
    if key is None:
        created = await ApiKey.objects.acreate(namespace=namespace, name=name,
                                               digest=digest(secret))
        return created, True
    key.digest = digest(secret)
    key.nonce = new_nonce()
    await key.asave(update_fields=["digest", "nonce"])
    return key, False


# --- personal tokens -------------------------------------------------------------------------


def new_personal_secret() -> str:
    return PERSONAL_PREFIX + secrets.token_urlsafe(32)


def _check_usable(token: PersonalToken) -> None:
    if token.revoked is not None:
        raise Unauthenticated("this token has been revoked")
    if token.expires <= timezone.now():
        raise Unauthenticated("this token has expired")
    if not token.user.is_active:
        raise Unauthenticated("the account this token belongs to is disabled")


async def _touch(token: PersonalToken) -> None:
    now = timezone.now()
    if token.last_used is None or now - token.last_used > LAST_USED_RESOLUTION:
        await PersonalToken.objects.filter(pk=token.pk).aupdate(last_used=now)


async def _personal_token(secret: str) -> PersonalToken:
    try:
        token = await PersonalToken.objects.select_related("user").aget(digest=digest(secret))
    except PersonalToken.DoesNotExist:
        raise Unauthenticated("invalid token") from None
    _check_usable(token)
    await _touch(token)
    return token


async def memberships_of(user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A person's roles by namespace, as they are now. A superuser counts
    as an admin of ``system``."""
    found = {
        name: role async for name, role in
        Membership.objects.filter(user=user).values_list("namespace__name", "role")
    }
    if user.is_superuser:
        found[SYSTEM_NAMESPACE] = Role.ADMIN
    return found


async def _person(token: PersonalToken, namespace: str) -> Principal:
    memberships = await memberships_of(token.user)
    if namespace not in memberships and not (namespace and SYSTEM_NAMESPACE in memberships):
        # The namespace the token was made for is no longer theirs.
        namespace = min(memberships) if memberships else ""
    return Principal(namespace=namespace, username=token.user.get_username(),
                     user_id=token.user.pk, token_id=token.pk, memberships=memberships)
