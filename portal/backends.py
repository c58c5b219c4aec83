"""Where the portal keeps what is not in etcd: Django's database and the
channel layer, as its settings choose.

One portal process (``make run``) needs nothing beyond SQLite and channels'
in-memory layer. Several share PostgreSQL (SFCLOUD_DATABASE_URL) and Redis
(SFCLOUD_REDIS_URL), whose Python packages come with ``sfcloud[multi]``; a
setting whose package is missing stops the portal at start, saying so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

MULTI = ".venv/bin/pip install -e '.[multi]'"


def database(url: str | None, *, sqlite: Path, sqlite_for_tests: Path) -> dict[str, Any]:
    """Django's ``DATABASES["default"]``: PostgreSQL when ``url`` is given, else SQLite."""
    if url:
        return postgres(url)
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": sqlite,
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20,
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        "TEST": {"NAME": str(sqlite_for_tests)},
    }


def postgres(url: str) -> dict[str, Any]:
    """``postgresql://user:password@host:port/name?sslmode=require`` as Django
    wants it; ``?host=/run/postgresql`` reaches a local server's socket."""
    _need("psycopg", "SFCLOUD_DATABASE_URL")
    _need("psycopg_pool", "SFCLOUD_DATABASE_URL")
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    host = options.pop("host", "") or unquote(parts.hostname or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(parts.port or ""),
        # Under ASGI each request may run on another thread, so Django's
        # persistent connections would leak: psycopg's pool keeps them instead.
        "CONN_MAX_AGE": 0,
        "OPTIONS": {**options, "pool": True},
    }


def channel_layer(redis_url: str | None) -> dict[str, Any]:
    """Channels' ``CHANNEL_LAYERS["default"]``: Redis when a URL is given, so that
    several portal processes reach each other's browsers; else in memory."""
    if not redis_url:
        return {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    _need("channels_redis", "SFCLOUD_REDIS_URL")
    return {"BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url]}}


def _need(module: str, setting: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"portal: not starting: {setting} needs the {module} package "
                         f"({MULTI})")
