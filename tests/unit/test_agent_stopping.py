"""The agent stops on SIGTERM at once, even while a thread is stuck in a blocking call."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from cloudstate.config import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import asyncio, logging, sys, time
    from nodeagent.stopping import run_until_stopped

    logging.basicConfig(level=logging.INFO)

    async def main():
        print("ready", flush=True)
        if sys.argv[1] == "stuck":
            await asyncio.to_thread(time.sleep, 600)  # a libvirt call that never returns
        else:
            await asyncio.sleep(600)

    run_until_stopped(main, grace=float(sys.argv[2]))
""")


def _stop_after_start(mode: str, grace: float) -> tuple[float, int, str]:
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, mode, str(grace)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        return time.monotonic() - began, process.returncode, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_stop_does_not_wait_for_a_stuck_blocking_call() -> None:
    took, code, stderr = _stop_after_start("stuck", grace=1.0)
    assert code == 0, stderr
    assert 1.0 <= took < 6, took
    warning = next(line for line in stderr.splitlines() if "without waiting" in line)
    assert "asyncio_0" in warning  # the executor's thread, named for whoever reads the log


def test_a_stop_with_nothing_blocking_is_immediate() -> None:
    took, code, stderr = _stop_after_start("idle", grace=20.0)
    assert code == 0, stderr
    assert took < 5, took  # not held until the grace period ends
    assert "INFO:nodeagent:stopped" in stderr and "without waiting" not in stderr
