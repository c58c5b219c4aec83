"""``sfcloud-deploy``: several machines, one cloud.

    sfcloud-deploy init --name h1 --address 10.0.0.11   this machine's first node: a whole cloud
    sfcloud-deploy add-node h2 --address 10.0.0.12 [--etcd] [--portal]
    sfcloud-deploy accept-joins [--once]     add the machines that join with a token
    sfcloud-deploy join https://PORTAL:13003 --token T --ca-sha256 F
                                             on a new machine: join with a token
    sfcloud-deploy remove-node h2 [--force]
    sfcloud-deploy apply                     converge every node to cloud.yml again
    sfcloud-deploy upgrade [--source DIR]    every node to a new build, one at a time
    sfcloud-deploy backup                    etcd, the portal's database, the CA and config
    sfcloud-deploy restore <backup>          on fresh etcd data; guests keep running
    sfcloud-deploy status                    nodes, etcd members, backups
    sfcloud-deploy build [--source DIR]      only build a release (where PyPI is reachable)

Run as root on the machine that keeps the deploy directory (the first node,
usually); it reaches every node over SSH (root, key authentication; the
nodes' host keys must be known). See deploy/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cloudstate.config import REPO_ROOT
from deploy import backups, cloudconfig, joinclient, joins, upgrade
from deploy.cloudconfig import NodeConfig, SshConfig
from deploy.cluster import ClusterError
from deploy.deploydir import DEFAULT_DIR, DeployDir
from deploy.operations import Context, DeployError, add_node, apply, init, remove_node


def _say(message: str) -> None:
    print(f"sfcloud-deploy: {message}", flush=True)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="sfcloud-deploy", description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  epilog="\n".join(__doc__.splitlines()[2:]))
    top.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                     help=f"the deploy directory (default: {DEFAULT_DIR})")
    top.add_argument("--verbose", "-v", action="store_true", help="show Ansible's output")
    verbs = top.add_subparsers(dest="verb", required=True)

    made = verbs.add_parser("init", help="make this cloud, with its first node")
    made.add_argument("--name", required=True, help="the first node's name")
    made.add_argument("--address", required=True,
                      help="its address on the network between the nodes (and for SSH)")
    made.add_argument("--cloud", default="sfcloud", help="the cloud's name")
    made.add_argument("--service-manager", choices=cloudconfig.SERVICE_MANAGERS,
                      default="systemd", help="none: no init system (start-stop-daemon)")
    made.add_argument("--database", choices=cloudconfig.DATABASES, default="sqlite",
                      help="postgresql (with Redis): needed for several portals")
    made.add_argument("--source", default=str(REPO_ROOT),
                      help="the sfcloud checkout to install (default: this one)")
    made.add_argument("--ssh-user", default="root")
    made.add_argument("--ssh-key", default="/root/.ssh/id_ed25519")
    made.add_argument("--known-hosts", default="/root/.ssh/known_hosts")
    made.add_argument("--demo-image", help="a qcow2 registered as `demo` (default: built)")
    made.add_argument("--portal-port", type=int, default=13000)
    made.add_argument("--origin", action="append", default=[],
                      help="another origin browsers open the portal from (a proxy's)")

    added = verbs.add_parser("add-node", help="make another machine a node of the cloud")
    added.add_argument("name")
    added.add_argument("--address", required=True)
    added.add_argument("--etcd", action="store_true",
                       help="also an etcd member (joins as a learner, then promoted)")
    added.add_argument("--portal", action="store_true",
                       help="also a portal (needs database: postgresql)")

    accepting = verbs.add_parser(
        "accept-joins", help="add each machine that joins with a token from the Nodes page "
                             "(as add-node does)")
    accepting.add_argument("--once", action="store_true", help="stop after one join")
    accepting.add_argument("--timeout", type=float,
                           help="stop after this many seconds without a join")
    joining = verbs.add_parser("join", help="on a new machine: join the cloud with a token "
                                            "(the command the Nodes page prints)")
    joinclient.add_arguments(joining)

    removed = verbs.add_parser("remove-node", help="take a node out of the cloud")
    removed.add_argument("name")
    removed.add_argument("--force", action="store_true",
                         help="even while it holds instances (they stay, shown unreachable, "
                              "until deleted), or if it does not answer")

    verbs.add_parser("apply", help="converge every node to cloud.yml (changes nothing when "
                                   "nothing changed)")
    upgraded = verbs.add_parser("upgrade", help="every node to a new build, one at a time")
    upgraded.add_argument("--source", help="the sfcloud checkout to install (default: "
                                           "`source` in cloud.yml)")
    verbs.add_parser("backup", help="etcd, the portal's database, the CA and configuration")
    restored = verbs.add_parser("restore", help="the cloud as a backup had it")
    restored.add_argument("backup", help="a backup's name (see `status`) or directory")
    verbs.add_parser("status", help="nodes, etcd members and backups")
    built = verbs.add_parser("build", help="build a release into the deploy directory, for a "
                                           "later init or upgrade (the nodes need no PyPI; "
                                           "this machine does, once)")
    built.add_argument("--source", default=str(REPO_ROOT))
    verbs.add_parser("credentials", help="print the admin's password and the system key")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        print("sfcloud-deploy: run it as root (it writes /etc/sfcloud/deploy and reaches "
              "the nodes as root)", file=sys.stderr)
        return 1
    os.umask(0o077)
    if args.verb == "join":  # the new machine's side: no deploy directory there
        return joinclient.run(args)
    ctx = Context(DeployDir(args.dir.resolve()), say=_say, verbose=args.verbose)
    started = time.monotonic()
    try:
        _dispatch(ctx, args)
    except (DeployError, cloudconfig.ConfigError, ClusterError) as exc:
        print(f"sfcloud-deploy: {args.verb} failed: {exc}", file=sys.stderr, flush=True)
        return 1
    changed = sum(play.changed for play in ctx.plays)
    if ctx.plays:
        _say(f"{args.verb} done in {time.monotonic() - started:.0f} s"
             f"{'; nothing changed' if changed == 0 else f'; {changed} changes'}")
    return 0


def _dispatch(ctx: Context, args: argparse.Namespace) -> None:
    if args.verb == "init":
        config = init(ctx, name=args.name, address=args.address, cloud=args.cloud,
                      service_manager=args.service_manager, database=args.database,
                      source=args.source, demo_image=args.demo_image,
                      ssh=SshConfig(args.ssh_user, args.ssh_key, args.known_hosts),
                      portal_port=args.portal_port, origins=tuple(args.origin))
        _banner(ctx, config)
    elif args.verb == "apply":
        apply(ctx)
    elif args.verb == "add-node":
        add_node(ctx, NodeConfig(name=args.name, address=args.address, etcd=args.etcd,
                                 portal=args.portal))
    elif args.verb == "accept-joins":
        joins.accept(ctx, once=args.once, timeout=args.timeout)
    elif args.verb == "remove-node":
        remove_node(ctx, args.name, force=args.force)
    elif args.verb == "upgrade":
        upgrade.upgrade(ctx, source=args.source)
    elif args.verb == "backup":
        made = backups.backup(ctx)
        _say(f"backup {made.name} in {made.path}")
    elif args.verb == "restore":
        backups.restore(ctx, args.backup)
    elif args.verb == "status":
        for line in status_lines(ctx):
            print(line)
    elif args.verb == "build":
        ctx.deploy_dir.prepare()
        made = ctx.build_release(args.source)
        _say(f"release {made.id} ({made.tarball.name}, {made.wheelhouse.name})")
    elif args.verb == "credentials":
        config = ctx.config()
        _banner(ctx, config, again=True)


def _banner(ctx: Context, config: cloudconfig.CloudConfig, again: bool = False) -> None:
    portal = config.portal_nodes[0]
    url = f"http://{portal.address}:{config.portal.port}"
    print("\n".join([
        "",
        f"  sfcloud is running: open {url}",
        "",
        "  Log in as:  admin",
        f"  Password:   {ctx.deploy_dir.secret('admin_password')}",
        "",
        "  Shaken Fist's client:",
        f"    export SHAKENFIST_API_URL={url}/api",
        "    export SHAKENFIST_NAMESPACE=system",
        f"    export SHAKENFIST_KEY={ctx.deploy_dir.secret('system_key')}",
        "",
        f"  {'Kept' if again else 'Both are kept'} in {ctx.deploy_dir.secrets} (root only): "
        "`sfcloud-deploy credentials` shows them again.",
        "",
    ]), flush=True)


def status_lines(ctx: Context) -> list[str]:
    config = ctx.config()
    cluster = ctx.cluster(config)
    lines = [f"cloud {config.name}: {len(config.nodes)} nodes"]
    try:
        alive = cluster.alive_nodes()
    except Exception as exc:  # noqa: BLE001 - status says what it can
        alive = set()
        lines.append(f"  etcd does not answer: {exc}")
    for node in config.nodes:
        roles = [r for r, on in (("etcd", node.etcd), ("portal", node.portal),
                                 ("network node", node.network_node)) if on]
        info = cluster.node_info(node.name) if alive else None
        lines.append(f"  {node.name:12} {node.address:16} "
                     f"{'online' if node.name in alive else 'OFFLINE':8} "
                     f"{info.release if info else '':24} {', '.join(roles)}")
    try:
        for member in cluster.health():
            lines.append(f"  etcd {member.name or '(not started)':12} {member.address:16} "
                         + ("learner" if member.learner else
                            "leader" if member.leader else
                            "member" if member.answered else f"DOWN ({member.error})"))
    except ClusterError as exc:
        lines.append(f"  {exc}")
    for made in backups.listed(ctx.deploy_dir):
        lines.append(f"  backup {made.name}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
