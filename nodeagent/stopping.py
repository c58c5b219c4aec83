"""How the agent stops on SIGTERM or SIGINT: at once, even with a blocking call unfinished.

The agent's blocking work (libvirt calls, copies, fsyncs, qemu-img) runs in threads. A
cancelled task stops waiting for its thread, but ``asyncio.run`` then waits for every
thread of the default executor before it returns, so one call that does not return (a
libvirtd under load, a copy from a stalled disk) used to hold a stop for as long as it
hung. The agent is built to be killed at any point and converge when it starts again
(files are made under temporary names and renamed; guests are never touched by a stop),
so leaving such a call unfinished is as safe as SIGKILL: after a grace period the
process exits, saying which threads were still busy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable

log = logging.getLogger("nodeagent")

# Long enough for the usual stop (tasks cancelled, connections closed: well under a
# second), short enough to stay inside an init system's stop timeout (systemd: 90 s).
STOP_GRACE_SECONDS = 10.0


def run_until_stopped(main: Callable[[], Awaitable[None]],
                      grace: float = STOP_GRACE_SECONDS) -> None:
    """Run ``main()`` until it returns or the process is asked to stop."""
    asyncio.run(_run(main, grace))


async def _run(main: Callable[[], Awaitable[None]], grace: float) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stop, task, grace)
    try:
        await main()
    except asyncio.CancelledError:
        log.info("stopped")


def _stop(task: asyncio.Task[None], grace: float) -> None:
    task.cancel()
    timer = threading.Timer(grace, _exit_now)
    timer.daemon = True
    timer.start()


def _exit_now() -> None:
    busy = sorted(thread.name for thread in threading.enumerate()
                  if thread is not threading.main_thread() and not thread.daemon)
    log.warning("stopping without waiting for blocking calls still running in: %s",
                ", ".join(busy) or "(none)")
    logging.shutdown()
    os._exit(0)
