"""``python -m nodeagent``: run this machine's node agent in the foreground."""

from __future__ import annotations

import argparse
import logging
import os

from cloudstate import privacy
from cloudstate.settings import check_at_start, read
from cloudstate.tls import TlsError
from nodeagent import kvmdevice, stopping
from nodeagent.agent import Agent
from nodeagent.settings import AgentSettings
from nodeagent.simulated import SimulationRefused


def main() -> None:
    parser = argparse.ArgumentParser(description="sfcloud node agent")
    parser.add_argument("--name", help="node name (default: SFCLOUD_NODE_NAME or the hostname)")
    parser.add_argument("--log-level", help="default: SFCLOUD_LOG_LEVEL")
    args = parser.parse_args()
    if args.name:
        os.environ["SFCLOUD_NODE_NAME"] = args.name
    check_at_start("nodeagent")
    privacy.private_umask()
    logging.basicConfig(
        level=(args.log_level or read("SFCLOUD_LOG_LEVEL")).upper(),
        format="%(asctime)s nodeagent %(levelname)s %(name)s: %(message)s",
    )
    kvm = kvmdevice.ensure_access()
    if kvm.changed or not kvm.ok:
        logging.getLogger("nodeagent").warning("%s", kvm.message)
    # Stopping the agent never touches guests: they keep running and the next agent
    # picks them up where this one left off.
    stopping.run_until_stopped(lambda: _run(AgentSettings()))


async def _run(settings: AgentSettings) -> None:
    try:
        agent = Agent(settings)
    except (TlsError, SimulationRefused) as exc:
        raise SystemExit(f"nodeagent: not starting: {exc}") from None
    await agent.run()


if __name__ == "__main__":
    main()
