"""Guests that report what they can reach, for security group tests with
real (TCG) guests.

A guest's user data starts servers and probes in the background and prints
one line per probe on its serial console, every second, for its whole life:

    PROBE <name> ok|no      an HTTP GET of the target answered, or not
    FLOW <n>                a line of a long-lived TCP connection arrived

so a test changes something through the API and then watches the console
log (from the offset it had at the change) for what the guest sees next.
Everything the guests reach is inside their own networks, or the test's
outside world.
"""

from __future__ import annotations

import re
import time

from tests.support.cloud import ApiClient, Cloud, wait_for
from tests.support.fixtures_networks import script

BOOT = 150
# The console's shell prompt (and the terminal query it sends) may start a
# line our background jobs then finish.
_PROMPT = re.compile(r"^root@[^#\s]*# (?:\x1b\[[0-9;?]*[A-Za-z])*")

# A server on 8080 (busybox httpd) and a "tick" server on 9000: each
# connection gets the time once a second until it breaks.
SERVE = """
mkdir -p /www && echo "hello from $(hostname)" > /www/index.html
httpd -p 8080 -h /www
cat > /tmp/tick <<'TICK'
#!/bin/sh
while true; do date +%s; sleep 1; done
TICK
chmod +x /tmp/tick
nc -ll -p 9000 -e /tmp/tick &
"""


def serve_on(port: int) -> str:
    """Another HTTP server, on ``port``."""
    return f"httpd -p {port} -h /www\n"


def probe(name: str, url: str) -> str:
    """Print PROBE <name> ok|no every second."""
    return (f"(while true; do if timeout 3 wget -q -O /dev/null {url}; then echo 'PROBE {name} ok';"
            f" else echo 'PROBE {name} no'; fi; sleep 1; done) &\n")


def flow(address: str, port: int = 9000) -> str:
    """Keep a tick connection open (again and again), printing FLOW <time> per line."""
    return (f"(while true; do nc {address} {port} | while read t; do echo \"FLOW $t\"; done;"
            " sleep 1; done) &\n")


def boot(api: ApiClient, name: str, network: str, address: str, groups: list[str],
         user_data: str, placed_on: str | None = None, **nic: object) -> dict:
    """An instance with one NIC (``nic``: more of its network entry)."""
    entry = {"network_uuid": network, "address": address, "security_groups": groups, **nic}
    response = api.post("/instances", {"name": name, "cpus": 1, "memory": 128,
                                       "disk": [{"size": 1, "base": "demo"}],
                                       "network": [entry], "user_data": script(user_data),
                                       **({"placed_on": placed_on} if placed_on else {})})
    assert response.status_code == 200, response.text
    return response.json()


class Console:
    """One guest's serial console log, read from where the test last looked."""

    def __init__(self, cloud: Cloud, uuid: str):
        self.cloud = cloud
        self.uuid = uuid
        self.offset = 0

    def text(self) -> str:
        return self.cloud.console_log(self.uuid).replace("\r", "")

    def mark(self) -> None:
        """From now on only what the guest prints next counts."""
        self.offset = len(self.text())

    def lines(self) -> list[str]:
        return [_PROMPT.sub("", line).strip() for line in self.text()[self.offset:].splitlines()]

    def wait(self, line: str, timeout: float = 60) -> float:
        """Seconds until ``line`` is printed (after the mark)."""
        started = time.monotonic()
        wait_for(lambda: line in self.lines(), timeout, f"{line!r} on {self.uuid}'s console",
                 interval=0.2)
        return time.monotonic() - started

    def settled(self, name: str, outcome: str, timeout: float = 60) -> float:
        """Seconds until probe ``name`` prints ``outcome`` twice in a row (a
        probe started before a change may still report the old answer once)."""
        started = time.monotonic()

        def twice() -> bool:
            seen = [line for line in self.lines() if line.startswith(f"PROBE {name} ")]
            return seen[-2:] == [f"PROBE {name} {outcome}"] * 2

        wait_for(twice, timeout, f"probe {name} answering {outcome!r} on {self.uuid}",
                 interval=0.2)
        return time.monotonic() - started

    def flows(self) -> int:
        return sum(1 for line in self.lines() if line.startswith("FLOW "))
