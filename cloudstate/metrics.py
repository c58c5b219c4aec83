"""Prometheus metrics both kinds of process expose, and who may read them.

The portal and every agent answer ``GET /metrics`` in Prometheus' text
format. Prometheus cannot sign a grant per request (as the portal does for
the agents' other routes), so /metrics takes one fixed bearer token, the
setting SFCLOUD_METRICS_TOKEN (or a file named by SFCLOUD_METRICS_TOKEN_FILE,
which Prometheus' ``authorization.credentials_file`` can share). Without it,
/metrics answers 404: nothing is exposed that nobody asked for.

Metrics of the whole process (etcd round trips, the process's own CPU and
memory) live in prometheus_client's default registry; each program adds its
own registries and ``exposition`` joins them into one answer.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cloudstate.settings import read

PATH = "/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
OFF_MESSAGE = "metrics are off: set SFCLOUD_METRICS_TOKEN to expose them"

# etcd answers in well under a millisecond on one machine, in a few across a
# LAN; the buckets cover both and the timeouts (5 s).
ETCD_SECONDS = Histogram(
    "sfcloud_etcd_request_duration_seconds",
    "etcd round trips (unary calls, with their fail-over retries), by operation",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


def token() -> str | None:
    """The token /metrics wants, or None when metrics are off."""
    return read("SFCLOUD_METRICS_TOKEN")


def allowed(authorization: str, wanted: str | None) -> bool:
    """Whether an Authorization header carries the metrics token."""
    if wanted is None:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              wanted.encode())


def exposition(registries: Iterable[CollectorRegistry] = ()) -> bytes:
    """The process's metrics and those of ``registries``, as one text answer."""
    return b"".join(generate_latest(registry) for registry in (REGISTRY, *registries))
