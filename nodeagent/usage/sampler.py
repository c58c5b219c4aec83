"""The agent's usage sampler: every SFCLOUD_USAGE_INTERVAL seconds, one
reading of the host's counters and one bulk statistics call to libvirt for
every guest, turned into figures, written to the history files and handed to
whoever is watching live.

Samples are taken on the interval's boundaries of the wall clock (10:00:00,
10:00:10, ...) and stand for that moment, however long libvirt took to
answer: so each lands in its own slot of the finest tier, graphs get a point
every interval exactly, and the history of every node lines up. The sampler
also answers "what is it like now" for /metrics, reading afresh when
sampling is off or behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloudstate.model import InstanceSpec
from cloudstate.usage import (
    INSTANCE_METRICS,
    NODE_METRICS,
    NODE_TOPIC,
    SUMMARY_TOPIC,
    TIERS,
    clean,
    instance_topic,
    sparkline,
)
from nodeagent.hypervisor import Hypervisor, HypervisorError
from nodeagent.usage.figures import Figures, guest_figures, node_figures
from nodeagent.usage.guests import GuestCounters, guest_counters
from nodeagent.usage.history import NODE_KEY, HistoryStore
from nodeagent.usage.host import HostCounters, HostReader
from nodeagent.usage.live import Topics

log = logging.getLogger(__name__)

# The finest tier: where live figures and sparklines come from.
FINEST = TIERS[0]


@dataclass(frozen=True)
class Sample:
    """One reading: the counters as they were at ``taken``, and the figures
    over the ``seconds`` since the reading before (none for the first)."""

    taken: float
    seconds: float
    host: HostCounters
    # The moment it stands for in the history and for live graphs: the interval's
    # boundary it was taken at (``taken`` for a reading out of the loop).
    at: float
    guests: dict[str, GuestCounters]  # the running guests placed on this node
    node: Figures
    figures: dict[str, Figures] = field(default_factory=dict)  # per guest
    libvirt_answered: bool = True


def _clean(figures: Figures) -> dict[str, float | None]:
    return {name: clean(value) for name, value in figures.items()}


class UsageSampler:
    def __init__(self, *, interval: int, hypervisor: Hypervisor, store: HistoryStore,
                 placed: Callable[[], Mapping[str, InstanceSpec]],
                 host: HostReader | None = None, topics: Topics | None = None,
                 clock: Callable[[], float] = time.time):
        self.interval = interval
        self.hypervisor = hypervisor
        self.store = store
        self.placed = placed
        self.host = host or HostReader()
        self.topics = topics or Topics()
        self.clock = clock
        self.latest: Sample | None = None
        self._libvirt_failing = False

    # --- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        if not self.interval:
            log.info("usage sampling is off (SFCLOUD_USAGE_INTERVAL=0)")
            return
        try:
            while True:
                now = self.clock()
                boundary = (now // self.interval + 1) * self.interval
                await asyncio.sleep(boundary - now)
                try:
                    await self.sample(at=boundary)
                except Exception:  # noqa: BLE001 - graphs are never worth the agent's life
                    log.exception("a usage sample failed; the next one is in %d s",
                                  self.interval)
        finally:
            self.store.close()

    async def sample(self, at: float | None = None) -> Sample:
        """Take a sample (standing for the moment ``at``, or now), keep it in the
        history and send it to listeners."""
        placed = self.placed()
        sample = await self.read(placed, at)
        self._record(sample, placed)
        self._publish(sample)
        return sample

    async def current(self) -> Sample:
        """The latest sample if it is still current, else a fresh reading
        (not kept in the history: sampling is off, or late)."""
        latest = self.latest
        if latest is not None and self.interval and \
                self.clock() - latest.taken <= 1.5 * self.interval:
            return latest
        return await self.read(self.placed())

    # --- reading -----------------------------------------------------------------------

    async def read(self, placed: Mapping[str, InstanceSpec], at: float | None = None) -> Sample:
        try:
            records = await self.hypervisor.domain_stats()
            answered = True
            if self._libvirt_failing:
                log.info("libvirt answers again; guests are sampled again")
                self._libvirt_failing = False
        except HypervisorError as exc:
            records, answered = [], False
            if not self._libvirt_failing:
                log.warning("no guest statistics from libvirt (%s); sampling the host only", exc)
                self._libvirt_failing = True
        host = self.host.read()
        taken = self.clock()
        before = self.latest
        seconds = taken - before.taken if before is not None else 0.0
        guests = {uuid: guest_counters(uuid, stats) for uuid, stats in records if uuid in placed}
        figures = {
            uuid: guest_figures(counters, before.guests.get(uuid) if before else None, seconds)
            for uuid, counters in guests.items()
        }
        node = node_figures(host, before.host if before else None, seconds, len(guests))
        if not answered:
            node["guests"] = None
        self.latest = Sample(taken=taken, seconds=seconds, host=host,
                             at=taken if at is None else at, guests=guests, node=node,
                             figures=figures, libvirt_answered=answered)
        return self.latest

    # --- keeping -----------------------------------------------------------------------

    def _record(self, sample: Sample, placed: Mapping[str, InstanceSpec]) -> None:
        self.store.get(NODE_KEY, NODE_METRICS).record(sample.at, sample.node, sample.seconds)
        for uuid, figures in sample.figures.items():
            self.store.get(uuid, INSTANCE_METRICS).record(sample.at, figures, sample.seconds)
        # A guest's history goes with it: once it is no longer placed here,
        # or is deleted and its domain gone.
        for key in list(self.store.keys()):
            if key == NODE_KEY or key in sample.guests:
                continue
            spec = placed.get(key)
            if spec is None or (spec.desired == "deleted" and sample.libvirt_answered):
                self.store.forget(key)

    # --- live ----------------------------------------------------------------------------

    def _publish(self, sample: Sample) -> None:
        topics = self.topics
        if topics.listened(NODE_TOPIC):
            topics.publish(NODE_TOPIC, {"t": sample.at, "values": _clean(sample.node)})
        for uuid, figures in sample.figures.items():
            topic = instance_topic(uuid)
            if topics.listened(topic):
                topics.publish(topic, {"t": sample.at, "values": _clean(figures)})
        if topics.listened(SUMMARY_TOPIC):
            topics.publish(SUMMARY_TOPIC, self.summary(sample))

    def summary(self, sample: Sample) -> dict[str, Any]:
        """Every running guest's figures now and its last hour of CPU, as a
        list of instances shows them (and the node's own)."""
        return {
            "t": sample.at,
            "interval": self.interval,
            "node": {**_clean(sample.node), "cpu_hour": self._sparkline(NODE_KEY, NODE_METRICS,
                                                                         sample.at)},
            "instances": {
                uuid: {**_clean(figures),
                       "cpu_hour": self._sparkline(uuid, INSTANCE_METRICS, sample.at)}
                for uuid, figures in sample.figures.items()
            },
        }

    def _sparkline(self, key: str, metrics: tuple[str, ...], now: float) -> list[float | None]:
        history = self.store.find(key, metrics)
        if history is None:
            return []
        _, columns = history.series(FINEST, now)
        return sparkline(columns["cpu"])
