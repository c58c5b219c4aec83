"""Named places where a test may make the agent die on purpose.

The agent must converge after being killed anywhere; tests prove it by
setting SFCLOUD_FAILPOINTS=name[,name...] and checking that a restarted
agent finishes the job with nothing duplicated or leaked. Unset (always, in
production), hit() costs one set lookup.
"""

from __future__ import annotations

import logging
import os

from cloudstate.settings import read

_ARMED = frozenset(read("SFCLOUD_FAILPOINTS"))


def hit(name: str) -> None:
    if name in _ARMED:
        logging.getLogger(__name__).error("failpoint %s: exiting now", name)
        logging.shutdown()
        os._exit(75)
