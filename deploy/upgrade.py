"""``sfcloud-deploy upgrade``: every node to a new build, one at a time.

1. Preflight: every etcd member answers and raises no alarm, every node's
   agent is online (a node that is down would be upgraded blind: remove it,
   or bring it back, first).
2. A backup (deploy.backups), so there is a way back.
3. The new release is staged on every node beside the running one; nothing
   restarts.
4. etcd is Debian's package, which a release of sfcloud does not change:
   nothing to do (its upgrades come with Debian's, one member at a time).
5. Portals, one at a time: the first applies the new release's database
   migrations (additive: portals still on the old release keep working),
   then each restarts on the new release and must answer before the next.
6. Agents, one at a time: each restarts on the new release (guests keep
   running: only the agent's process goes) and must be back online,
   reporting the new release, before the next.

The first failure stops the roll-out where it is: the nodes done run the new
release, the others the old one, and both work together (the compatibility
window is one release). Running ``upgrade`` again carries on.
"""

from __future__ import annotations

import time

from deploy import backups, inventory
from deploy.cluster import ClusterError
from deploy.operations import Context, DeployError


def preflight(ctx: Context) -> None:
    config = ctx.config()
    cluster = ctx.cluster(config)
    try:
        health = cluster.health()
    except ClusterError as exc:
        raise DeployError(f"preflight: {exc}") from None
    down = [h.name for h in health if not h.answered]
    if down:
        raise DeployError(f"preflight: etcd member {', '.join(down)} does not answer")
    alive = cluster.alive_nodes()
    offline = [name for name in config.names if name not in alive]
    if offline:
        raise DeployError(f"preflight: {', '.join(offline)} is offline: bring it back, or "
                          "remove it (`sfcloud-deploy remove-node`), before upgrading")


def upgrade(ctx: Context, *, source: str | None = None) -> None:
    config = ctx.config()
    current = ctx.deployed_release(config)
    new = ctx.build_release(source or config.source)
    if new.id == current.id:
        ctx.say(f"every node runs release {new.id} already")
        return
    ctx.say(f"upgrading from release {current.id} to {new.id}")
    preflight(ctx)
    made = backups.backup(ctx)
    ctx.say(f"backup {made.name} taken first")
    cluster = ctx.cluster(config)
    plan = inventory.plan_from_members(config, cluster.members())
    ctx.play(config, plan, "stage.yml", built=new, what=f"staging release {new.id} on")
    ctx.say("etcd: Debian's package, unchanged by this release")
    for index, node in enumerate(config.portal_nodes):
        ctx.play(config, plan, "upgrade-node.yml", limit=[node.name], built=new,
                 extra_vars={"sfcloud_upgrade_part": "portal",
                             "sfcloud_upgrade_migrate": "true" if index == 0 else "false"},
                 what=f"the portal on {node.name} to release {new.id}")
    for node in config.nodes:
        restarted = time.time()
        ctx.play(config, plan, "upgrade-node.yml", limit=[node.name], built=new,
                 extra_vars={"sfcloud_upgrade_part": "agent",
                             "sfcloud_upgrade_migrate": "false"},
                 what=f"the agent on {node.name} to release {new.id}")
        try:
            cluster.wait_alive([node.name], since=restarted - 1, release=new.id)
        except ClusterError as exc:
            raise DeployError(f"stopped after {node.name}: {exc}; the nodes before it run "
                              f"release {new.id}, those after it {current.id}") from None
        ctx.say(f"{node.name} is back online on release {new.id}")
    ctx.record_release(new)
