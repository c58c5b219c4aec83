"""The etcd half of the cloud's invariants, as the portal sees them: the
checks of ``cloudstate.audit`` with the scheduler's own limits from the
portal's settings. ``manage.py check-cloud`` and the tests use it; the
hypervisor half runs on each node (``python -m nodeagent.check``)."""

from __future__ import annotations

import time

from django.conf import settings

from cloudstate.audit import DEFAULT_SETTLE, Drift, EtcdState, Limits, audit
from portal.cloud import store


def limits() -> Limits:
    return Limits(cpu_overcommit=settings.SCHEDULER_CPU_OVERCOMMIT,
                  ram_overcommit=settings.SCHEDULER_RAM_OVERCOMMIT,
                  ram_reserved_mib=settings.SCHEDULER_RAM_RESERVED_MIB)


async def read_state(settle: float = DEFAULT_SETTLE) -> EtcdState:
    return await EtcdState.read(store.etcd(), store.keys(), now=time.time(), settle=settle,
                                limits=limits())


async def check(settle: float = DEFAULT_SETTLE) -> list[Drift]:
    """Every drift etcd shows now."""
    return audit(await read_state(settle))
