"""Signed, expiring statements between the portal and the node agents.

Both sides share one cluster secret (the setting SFCLOUD_CLUSTER_SECRET, or
a file in the state directory that ``make run`` creates). The portal signs
what an agent must trust (a console ticket, say) and the agent signs what it
tells the portal; neither trusts the network in between. Tokens are
``base64(json).base64(hmac)``, carry an expiry and a purpose, and are
compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from cloudstate.settings import read

SECRET_FILE = "cluster.secret"  # noqa: S105 - a file name


class BadSignature(Exception):
    """The token was forged, altered, expired or meant for something else."""


def load_secret(state_dir: Path, *, create: bool = False) -> bytes:
    """The cluster secret: from its setting, else the state directory's file."""
    if value := read("SFCLOUD_CLUSTER_SECRET"):
        return value.encode()
    path = state_dir / SECRET_FILE
    if create and not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise RuntimeError(
            f"no cluster secret: set SFCLOUD_CLUSTER_SECRET(_FILE) or create {path} "
            "(make run does)"
        ) from None
    if len(value) < 32:
        raise RuntimeError(f"the cluster secret in {path} is too short")
    return value.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, body: str) -> bytes:
    key = hashlib.sha256(b"sfcloud-signing:" + purpose.encode() + b":" + secret).digest()
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def sign(secret: bytes, purpose: str, claims: dict[str, Any], ttl: float) -> str:
    body = _b64(json.dumps({**claims, "exp": time.time() + ttl}, sort_keys=True).encode())
    return f"{body}.{_b64(_mac(secret, purpose, body))}"


def verify(secret: bytes, purpose: str, token: str) -> dict[str, Any]:
    """The claims of a valid, unexpired token signed for ``purpose``."""
    try:
        body, mac = token.split(".", 1)
        expected = _mac(secret, purpose, body)
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise BadSignature("bad signature")
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError) as exc:
        raise BadSignature("malformed token") from exc
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
        raise BadSignature("malformed token")
    if claims["exp"] < time.time():
        raise BadSignature("expired")
    return claims
