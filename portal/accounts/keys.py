"""API key secrets and the bearer tokens issued for them.

A token is a signed, timestamped statement "key K of namespace N, nonce X".
It is checked against the key's current nonce on every request, so deleting
or rotating the key ends every token issued from it immediately.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.utils import timezone

from portal.accounts.models import ApiKey, Namespace, new_nonce
from portal.cloud.errors import BadRequest, Unauthenticated

_TOKEN_SALT = "sfcloud.api-token"  # noqa: S105 - a signing salt, not a secret
MIN_SECRET_LENGTH = 8


def digest(secret: str) -> str:
    key = hashlib.sha256(("sfcloud.api-key:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()


def generate_secret() -> str:
    return secrets.token_urlsafe(32)


def check_secret(secret: object) -> str:
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise BadRequest(f"key: a key must be a string of at least {MIN_SECRET_LENGTH} characters")
    return secret


@dataclass(frozen=True)
class Principal:
    """Who is calling the API: a namespace, through one of its keys."""

    namespace: str
    key_name: str

    @property
    def is_system(self) -> bool:
        return self.namespace == "system"


async def authenticate_key(namespace: str, secret: str) -> tuple[str, int]:
    """Check a namespace's key; return a new token and its lifetime."""
    if not isinstance(namespace, str) or not isinstance(secret, str):
        raise Unauthenticated("namespace and key must both be given")
    try:
        key = await ApiKey.objects.select_related("namespace").aget(
            digest=digest(secret), namespace__name=namespace
        )
    except ApiKey.DoesNotExist:
        raise Unauthenticated("unknown namespace or key") from None
    await ApiKey.objects.filter(pk=key.pk).aupdate(last_used=timezone.now())
    token = signing.dumps({"k": key.pk, "n": key.nonce}, salt=_TOKEN_SALT, compress=True)
    return token, settings.API_TOKEN_LIFETIME


async def principal_for_token(token: str) -> Principal:
    try:
        claims = signing.loads(token, salt=_TOKEN_SALT, max_age=settings.API_TOKEN_LIFETIME)
    except signing.SignatureExpired:
        raise Unauthenticated("token expired") from None
    except signing.BadSignature:
        raise Unauthenticated("invalid token") from None
    try:
        key = await ApiKey.objects.select_related("namespace").aget(pk=claims["k"])
    except (ApiKey.DoesNotExist, KeyError, TypeError):
        raise Unauthenticated("the key this token was issued for no longer exists") from None
    if not hmac.compare_digest(key.nonce, str(claims.get("n", ""))):
        raise Unauthenticated("the key this token was issued for has been changed")
    return Principal(namespace=key.namespace.name, key_name=key.name)


async def set_key(namespace: Namespace, name: str, secret: str) -> ApiKey:
    """Create a key, or give an existing one a new secret (ending its tokens)."""
    secret = check_secret(secret)
    key = await ApiKey.objects.filter(namespace=namespace, name=name).afirst()
    if key is None:
        return await ApiKey.objects.acreate(namespace=namespace, name=name, digest=digest(secret))
    key.digest = digest(secret)
    key.nonce = new_nonce()
    await key.asave(update_fields=["digest", "nonce"])
    return key
