"""The agent's /metrics: its node and guests as Prometheus wants them.

Prometheus computes rates itself, so these are the raw counters of the
latest sample (a fresh reading when sampling is off or late), not the
figures the graphs show. Guests are labelled with their uuid, name and
namespace. The agent's work queues and the live graph listeners are there
too; etcd round trips and the process's own CPU and memory come from
``cloudstate.metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cloudstate.model import InstanceSpec
from nodeagent.usage.sampler import Sample
from nodeagent.workqueue import WorkQueue

GUEST_LABELS = ["uuid", "name", "namespace"]


@dataclass(frozen=True)
class AgentState:
    """Everything /metrics shows, gathered at the moment of the scrape."""

    sample: Sample
    placed: Mapping[str, InstanceSpec]
    queues: Mapping[str, WorkQueue]
    interval: int
    listeners: int


class _Fixed(Collector):
    """A collector of metric families already made for one scrape."""

    def __init__(self, families: list[Metric]):
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def registry(state: AgentState) -> CollectorRegistry:
    found = CollectorRegistry(auto_describe=False)
    found.register(_Fixed([*_node(state.sample), *_guests(state.sample, state.placed),
                           *_agent(state)]))
    return found


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help_text, value=value)


def _node(sample: Sample) -> list[Metric]:
    host = sample.host
    return [
        _gauge("sfcloud_node_cpus", "CPUs of this node", host.cpus),
        _counter("sfcloud_node_cpu_busy_seconds",
                 "CPU time spent on anything but idle and iowait, all CPUs", host.cpu_busy),
        _gauge("sfcloud_node_memory_total_bytes", "the node's memory", host.memory_total),
        _gauge("sfcloud_node_memory_available_bytes", "memory available for new work",
               host.memory_available),
        _gauge("sfcloud_node_load1", "1-minute load average", host.load[0]),
        _gauge("sfcloud_node_load5", "5-minute load average", host.load[1]),
        _gauge("sfcloud_node_load15", "15-minute load average", host.load[2]),
        _counter("sfcloud_node_disk_read_bytes", "bytes read from physical disks",
                 host.disk_read),
        _counter("sfcloud_node_disk_written_bytes", "bytes written to physical disks",
                 host.disk_written),
        _counter("sfcloud_node_network_receive_bytes", "bytes received on physical interfaces",
                 host.net_received),
        _counter("sfcloud_node_network_transmit_bytes", "bytes sent on physical interfaces",
                 host.net_sent),
        _gauge("sfcloud_node_guests_running", "running guests of this cloud on this node",
               len(sample.guests)),
    ]


_GUEST_METRICS = (
    # name, kind, help, field
    ("sfcloud_domain_cpu_seconds", CounterMetricFamily, "CPU time the guest has used", "cpu"),
    ("sfcloud_domain_vcpus", GaugeMetricFamily, "virtual CPUs the guest has", "vcpus"),
    ("sfcloud_domain_memory_max_bytes", GaugeMetricFamily, "memory the guest was given",
     "memory_max"),
    ("sfcloud_domain_memory_resident_bytes", GaugeMetricFamily,
     "host memory the guest's QEMU holds", "memory_resident"),
    ("sfcloud_domain_disk_read_bytes", CounterMetricFamily, "bytes the guest read, all disks",
     "disk_read"),
    ("sfcloud_domain_disk_written_bytes", CounterMetricFamily,
     "bytes the guest wrote, all disks", "disk_written"),
    ("sfcloud_domain_network_receive_bytes", CounterMetricFamily,
     "bytes the guest received, all interfaces", "net_received"),
    ("sfcloud_domain_network_transmit_bytes", CounterMetricFamily,
     "bytes the guest sent, all interfaces", "net_sent"),
)


def _guests(sample: Sample, placed: Mapping[str, InstanceSpec]) -> list[Metric]:
    families = []
    for name, kind, help_text, field in _GUEST_METRICS:
        family = kind(name, help_text, labels=GUEST_LABELS)
        for uuid, counters in sorted(sample.guests.items()):
            value = getattr(counters, field)
            if value is None:  # libvirt left it out this time: no sample rather than 0
                continue
            spec = placed.get(uuid)
            family.add_metric([uuid, spec.name if spec else "", spec.namespace if spec else ""],
                              value)
        families.append(family)
    return families


def _agent(state: AgentState) -> list[Metric]:
    waiting = GaugeMetricFamily("sfcloud_agent_queue_waiting",
                                "objects waiting for a reconcile pass", labels=["queue"])
    working = GaugeMetricFamily("sfcloud_agent_queue_in_progress",
                                "objects being reconciled now", labels=["queue"])
    for name, queue in sorted(state.queues.items()):
        waiting.add_metric([name], queue.waiting)
        working.add_metric([name], queue.in_progress)
    return [
        waiting, working,
        _gauge("sfcloud_usage_interval_seconds", "seconds between usage samples (0: off)",
               state.interval),
        _gauge("sfcloud_usage_sample_timestamp_seconds", "when the figures here were read",
               state.sample.taken),
        _gauge("sfcloud_usage_live_listeners", "open live graphs fed by this agent",
               state.listeners),
    ]
