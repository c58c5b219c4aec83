"""The kernel's tracked connections, through conntrack-tools' ``conntrack``.

Removing a rule only stops new connections: one already tracked keeps
flowing, since its packets pass as "established". So after every change the
security groups part lists each of its networks' zones and deletes the
flows the policy no longer allows (``policy.Policy.allows``), exactly those,
by their original tuple.

The calls block (a subprocess each); callers run them in a worker thread.
Argument lists only: every value put on the command line is a number or an
address this module parsed.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess

from nodeagent.net.policy import Flow

CONNTRACK = "conntrack"
_FIELD = re.compile(r"(\w+)=(\S+)")


class ConntrackError(Exception):
    pass


def available() -> bool:
    return shutil.which(CONNTRACK) is not None


def _run(*args: str, netns: str | None) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    try:
        return subprocess.run([*prefix, CONNTRACK, *args], capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError as exc:
        raise ConntrackError("the conntrack tool is missing (Debian package conntrack)") from exc


def parse(line: str) -> Flow | None:
    """One line of ``conntrack -L``; None for what is not IPv4 in a zone."""
    words = line.split()
    if len(words) < 3 or not words[1].isdigit():
        return None
    protocol = int(words[1])
    fields: dict[str, str] = {}
    for key, value in _FIELD.findall(line):
        fields.setdefault(key, value)  # the first of each: the original direction
    zone = fields.get("zone")
    if zone is None or "src" not in fields or "dst" not in fields:
        return None
    try:
        ipaddress.IPv4Address(fields["src"])
        ipaddress.IPv4Address(fields["dst"])
    except ValueError:
        return None

    def number(key: str) -> int | None:
        return int(fields[key]) if fields.get(key, "").isdigit() else None

    return Flow(zone=int(zone), protocol=protocol, src=fields["src"], dst=fields["dst"],
                sport=number("sport"), dport=number("dport"), icmp_type=number("type"),
                icmp_code=number("code"))


def flows(zone: int, netns: str | None = None) -> list[Flow]:
    """The IPv4 connections tracked in ``zone`` (of our network namespace,
    or the one named)."""
    result = _run("-L", "-f", "ipv4", "-w", str(zone), netns=netns)
    if result.returncode != 0:
        raise ConntrackError(f"conntrack -L failed: {result.stderr.strip()}")
    return [flow for line in result.stdout.splitlines() if (flow := parse(line)) is not None
            and flow.zone == zone]


def delete(flow: Flow, netns: str | None = None) -> bool:
    """End one tracked connection (its packets become new again, and are
    judged by the rules); False if it was gone already."""
    args = ["-D", "-w", str(flow.zone), "-p", str(flow.protocol), "-s", flow.src,
            "-d", flow.dst]
    if flow.protocol in (6, 17) and flow.sport is not None and flow.dport is not None:
        args += ["--sport", str(flow.sport), "--dport", str(flow.dport)]
    elif flow.protocol == 1 and flow.icmp_type is not None:
        args += ["--icmp-type", str(flow.icmp_type)]
        if flow.icmp_code is not None:
            args += ["--icmp-code", str(flow.icmp_code)]
    return _run(*args, netns=netns).returncode == 0


def flush(zone: int, netns: str | None = None) -> int:
    """End every connection of a zone (a network leaving this node)."""
    return sum(delete(flow, netns) for flow in flows(zone, netns))
