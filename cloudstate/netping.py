"""Pinging an address from a network's router (Shaken Fist's ``network
ping``), which the portal asks of the network node's agent: the path they
agree on and how many packets are sent."""

from __future__ import annotations

# A short ping, so the request stays quick: 3 packets 0.2 s apart, 1 s wait.
COUNT = 3
INTERVAL = 0.2
WAIT = 1
TIMEOUT = 15.0


def ping_path(network_uuid: str, address: str) -> str:
    return f"/networks/{network_uuid}/ping/{address}"
