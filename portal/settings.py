"""Django settings for the sfcloud portal.

Everything an operator may change is an SFCLOUD_* environment variable,
declared with its kind, default and help in ``cloudstate.settings`` (the
README's table comes from there). A bad value stops the portal here, at
start, with a message naming the variable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cloudstate import privacy
from cloudstate.config import Settings as CloudSettings
from cloudstate.settings import check_at_start, read
from portal import backends

check_at_start("portal")

BASE_DIR = Path(__file__).resolve().parent
CLOUD = CloudSettings.from_env()
PORTAL_STATE = CLOUD.state_dir / "portal"
if PORTAL_STATE.is_dir():
    privacy.tighten(PORTAL_STATE)  # what an older version left readable


def _secret_key() -> str:
    """SFCLOUD_SECRET_KEY, or one generated on first start and kept in var/."""
    if key := read("SFCLOUD_SECRET_KEY"):
        return str(key)
    path = PORTAL_STATE / "secret_key"
    if not path.exists():
        privacy.private_dir(PORTAL_STATE)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = read("SFCLOUD_DEBUG")
PORTAL_ADDRESS = read("SFCLOUD_PORTAL_ADDRESS")
# Node agents send their events here, over TLS (portal.events.agents).
PORTAL_AGENTS_ADDRESS = read("SFCLOUD_PORTAL_AGENTS_ADDRESS")
PORTAL_JOIN_ADDRESS = read("SFCLOUD_PORTAL_JOIN_ADDRESS")
JOIN_TOKEN_TTL = read("SFCLOUD_JOIN_TOKEN_TTL")
ALLOWED_HOSTS = read("SFCLOUD_ALLOWED_HOSTS")
# The exact scheme://host:port a browser may open pages and websockets from.
PORTAL_ORIGINS = read("SFCLOUD_PORTAL_ORIGINS")
CSRF_TRUSTED_ORIGINS = PORTAL_ORIGINS

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "portal.accounts",
    "portal.instances",
    "portal.nodes",
    "portal.networks",
    "portal.live",
    "portal.events",
    "portal.consoles",
    "portal.usage",
    "portal.dashboard",
]

MIDDLEWARE = [
    "portal.metrics.count_requests",
    "django.middleware.security.SecurityMiddleware",
    "portal.csp.content_security_policy",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Before anything reads the body: it is empty when BodyLimit refused it (asgi.py).
    "portal.bodylimit.refuse_large_bodies",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.cloud.middleware.EtcdUnavailableMiddleware",
    "portal.cloud.middleware.ApiJsonErrors",
    "portal.errors.RefusalsMiddleware",
]
# A form sent with a missing or stale CSRF token gets the portal's own page.
CSRF_FAILURE_VIEW = "portal.errors.csrf_failure"

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"
# Shaken Fist's client never sends a trailing slash and would turn a
# redirected POST into a GET; the API must answer exactly what it is asked.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.accounts.context.namespaces",
            ],
        },
    },
]

DATABASES = {"default": backends.database(
    read("SFCLOUD_DATABASE_URL"), sqlite=read("SFCLOUD_DATABASE"),
    sqlite_for_tests=PORTAL_STATE / "test-db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CHANNEL_LAYERS = {"default": backends.channel_layer(read("SFCLOUD_REDIS_URL"))}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Django's own hashers: PBKDF2-SHA256 for new passwords; scrypt hashes verify too.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# Behind a proxy that terminates TLS, requests reach us over plain HTTP: the
# proxy's X-Forwarded-Proto tells Django which were HTTPS (for secure cookies,
# HSTS and CSRF's origin checks). Only trusted when set: a client could send it.
TLS_PROXY = read("SFCLOUD_TLS_PROXY")
HTTPS = read("SFCLOUD_HTTPS") or TLS_PROXY
if TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_NAME = "sfcloud_session"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = HTTPS
SESSION_COOKIE_AGE = 12 * 3600
CSRF_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # pages carry the token in the HTML; scripts never read the cookie
SECURE_SSL_REDIRECT = False  # a proxy in front terminates TLS when there is one
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"  # as the CSP's frame-ancestors 'none' (portal/csp.py)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s portal %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": read("SFCLOUD_LOG_LEVEL")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# --- sfcloud ------------------------------------------------------------------------

# Shaken Fist tokens live 15 minutes; its client re-authenticates on a 401.
API_TOKEN_LIFETIME = read("SFCLOUD_API_TOKEN_LIFETIME")
# Overcommit as a small cloud wants it: CPUs are shared freely, memory and
# disk are not (a TCG guest costs its memory plus ~200 MiB of emulator).
SCHEDULER_STRATEGY = read("SFCLOUD_SCHEDULER")
SCHEDULER_CPU_OVERCOMMIT = read("SFCLOUD_CPU_OVERCOMMIT")
SCHEDULER_RAM_OVERCOMMIT = read("SFCLOUD_RAM_OVERCOMMIT")
SCHEDULER_RAM_RESERVED_MIB = read("SFCLOUD_RAM_RESERVED_MIB")
SCHEDULER_DISK_RESERVED_GB = read("SFCLOUD_DISK_RESERVED_GB")

RULES_PER_SECURITY_GROUP = read("SFCLOUD_RULES_PER_SECURITY_GROUP")
# Deleted instances stay readable by UUID this long, then are forgotten.
DELETED_RETENTION = read("SFCLOUD_DELETED_RETENTION")
JANITOR_INTERVAL = read("SFCLOUD_JANITOR_INTERVAL")
# An upload never made an artifact is forgotten this long after it began.
UPLOAD_LIFETIME = read("SFCLOUD_UPLOAD_LIFETIME")

# Failed log-ins (and API key checks) allowed per account and per client
# address within the window before further attempts are refused.
LOGIN_FAILURE_WINDOW = read("SFCLOUD_LOGIN_FAILURE_WINDOW")
LOGIN_FAILURES_PER_USER = read("SFCLOUD_LOGIN_FAILURES_PER_USER")
LOGIN_FAILURES_PER_ADDRESS = read("SFCLOUD_LOGIN_FAILURES_PER_ADDRESS")
# Wrong API keys allowed per namespace (from every address together).
API_KEY_FAILURES_PER_NAMESPACE = read("SFCLOUD_API_KEY_FAILURES_PER_NAMESPACE")
# Personal API tokens: the longest life a person may give one, in days.
PERSONAL_TOKEN_MAX_DAYS = read("SFCLOUD_PERSONAL_TOKEN_MAX_DAYS")
# How long the event log keeps what happened to each object.
EVENT_RETENTION_DAYS = read("SFCLOUD_EVENT_RETENTION_DAYS")
# The audit trail answers "who did that?" long after: a year by default; 0 keeps it forever.
AUDIT_RETENTION_DAYS = read("SFCLOUD_AUDIT_RETENTION_DAYS")

# Consoles: a session ends after this long without input from its browser, and
# one person may have this many open at once (across every portal process).
CONSOLE_IDLE_TIMEOUT = read("SFCLOUD_CONSOLE_IDLE_TIMEOUT")
CONSOLE_SESSIONS_PER_USER = read("SFCLOUD_CONSOLE_SESSIONS_PER_USER")
