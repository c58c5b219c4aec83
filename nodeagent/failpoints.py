"""Named places where a test may make the agent die, or stall, on purpose.

The agent must converge after being killed anywhere; tests prove it by
setting SFCLOUD_FAILPOINTS=name[:action][,...] and checking that a restarted
agent finishes the job with nothing duplicated or leaked. Actions:

    name            exit at once (status 75), as a SIGKILL would leave things
    name:sleep=S    stall the whole agent S seconds there (a blocking sleep: a
                    slow disk, a slow etcd), so a kill sent at a random time
                    lands in the middle of that step

Points sit after steps (``after-overlay``...) and inside them
(``mid-download`` with bytes written, ``mid-qemu-img`` with qemu-img
running, ``mid-config-drive`` with the ISO half in place, ``before-report``
and ``after-report`` around an etcd report, ``mid-teardown`` and
``before-release`` on the delete path). POINTS lists them all.

Unset (always, in production), hit() costs one dict lookup.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from cloudstate.settings import read

POINTS = (
    # inside an instance's create
    "mid-download", "mid-qemu-img", "after-overlay", "after-disks", "mid-config-drive",
    "after-define", "after-power", "before-report", "after-report",
    # snapshots, and the delete path
    "snapshot-paused", "mid-teardown", "before-release",
    # the network node
    "after-netns", "after-dnsmasq", "after-egress", "after-network-teardown",
    # security groups on a hypervisor
    "before-filter-apply",
)
EXIT_STATUS = 75


@dataclass(frozen=True)
class Action:
    sleep: float = 0.0  # 0: exit

    @classmethod
    def parse(cls, text: str) -> Action:
        if text in ("", "exit"):
            return cls()
        word, _, value = text.partition("=")
        if word == "sleep":
            try:
                return cls(sleep=float(value))
            except ValueError:
                pass
        raise ValueError(f"failpoint action {text!r}: say exit or sleep=SECONDS")


def parse(words: list[str]) -> dict[str, Action]:
    armed = {}
    for word in words:
        name, _, action = word.partition(":")
        if name not in POINTS:
            raise ValueError(f"no failpoint named {name!r} (known: {', '.join(POINTS)})")
        armed[name] = Action.parse(action)
    return armed


_ARMED = parse(read("SFCLOUD_FAILPOINTS"))


def hit(name: str) -> None:
    action = _ARMED.get(name)
    if action is None:
        return
    log = logging.getLogger(__name__)
    if action.sleep:
        log.warning("failpoint %s: stalling %.2f s", name, action.sleep)
        time.sleep(action.sleep)
        return
    log.error("failpoint %s: exiting now", name)
    logging.shutdown()
    os._exit(EXIT_STATUS)
