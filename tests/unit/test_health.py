"""Readiness (portal/health.py): ready only while etcd and the database
answer and the portal is not stopping; liveness asks nothing."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from cloudstate.etcd import EtcdUnavailable
from portal import health
from portal.cloud import store

pytestmark = pytest.mark.django_db(transaction=True)


class _Etcd:
    def __init__(self, up: bool):
        self.up = up

    async def get(self, key: str) -> None:
        if not self.up:
            raise EtcdUnavailable("connection refused")


@pytest.fixture
def etcd(monkeypatch: pytest.MonkeyPatch) -> _Etcd:
    fake = _Etcd(up=True)
    monkeypatch.setattr(store, "etcd", lambda: fake)
    monkeypatch.setattr(health, "_draining", False)
    return fake


async def test_ready_while_etcd_and_the_database_answer(etcd: _Etcd) -> None:
    response = await health.readyz(RequestFactory().get("/readyz"))
    assert (response.status_code, response.content) == (200, b"ready")
    etcd.up = False
    response = await health.readyz(RequestFactory().get("/readyz"))
    assert (response.status_code, response.content) == (503, b"not ready")
    # Alive all the same: liveness checks nothing beyond the process.
    live = await health.livez(RequestFactory().get("/livez"))
    assert (live.status_code, live.content) == (200, b"ok")


async def test_not_ready_once_stopping(etcd: _Etcd) -> None:
    assert await health.ready()
    health.drain()
    assert not await health.ready()
