"""``sfcloud-deploy backup`` and ``restore``.

A backup is a directory ``backups/<UTC time>/`` in the deploy directory:

    etcd.db           a snapshot of etcd, streamed from one voting member
    portal.dump       the portal's PostgreSQL database (pg_dump -Fc), or
    portal.sqlite3    its SQLite database (SQLite's online backup)
    config.tar.gz     cloud.yml, the release record, the CA and every
                      certificate, the secrets: what rebuilds the deploy
                      machine itself
    manifest.json     when, which release, etcd's revision and key count,
                      and each file's sha256

The newest ``backups: keep`` (5) are kept. Copy them off the machine.

A restore stops every agent and portal first (an agent must never act on
an etcd being replaced), then etcd on every member; each member gets a new
data directory from the same snapshot (a new cluster, as etcd's restore
makes one; the old directory is kept beside it), etcd starts, the portal's
database is restored, and the portals and agents start again. Guests run
throughout: the agents adopt them. What was made after the backup is gone
from etcd, and the agents remove what etcd no longer wants (a guest
created after the backup, for one).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudstate.etcd import Etcd, EtcdUnavailable
from deploy import inventory
from deploy.cluster import CLIENT_PORT, PREFIX, peer_url
from deploy.deploydir import DeployDir
from deploy.operations import DEPLOYED, Context, DeployError

SNAPSHOT = "etcd.db"
MANIFEST = "manifest.json"
CONFIG_ARCHIVE = "config.tar.gz"
SNAPSHOT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Backup:
    name: str
    path: Path

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text())


def listed(deploy_dir: DeployDir) -> list[Backup]:
    """Complete backups, oldest first."""
    if not deploy_dir.backups.exists():
        return []
    return [Backup(p.name, p) for p in sorted(deploy_dir.backups.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def backup(ctx: Context) -> Backup:
    config = ctx.config()
    deploy_dir = ctx.deploy_dir
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    partial = deploy_dir.backups / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True, mode=0o700)
    cluster = ctx.cluster(config)
    etcd_facts = _snapshot(ctx, cluster, partial / SNAPSHOT)
    ctx.say(f"etcd: revision {etcd_facts['revision']}, {etcd_facts['keys']} keys, "
            f"{etcd_facts['bytes'] / 2**20:.1f} MiB")
    database = config.database_node or config.portal_nodes[0]
    db_file = "portal.dump" if config.database == "postgresql" else "portal.sqlite3"
    plan = inventory.plan_from_members(config, cluster.members())
    ctx.play(config, plan, "backup.yml", limit=[database.name],
             extra_vars={"sfcloud_backup_file": str(partial / db_file)},
             what=f"the portal's database ({config.database}) from")
    _pack_config(deploy_dir, partial / CONFIG_ARCHIVE)
    files = {name: {"sha256": _sha256(partial / name), "bytes": (partial / name).stat().st_size}
             for name in (SNAPSHOT, db_file, CONFIG_ARCHIVE)}
    deployed = json.loads((deploy_dir.path / DEPLOYED).read_text())
    (partial / MANIFEST).write_text(json.dumps({
        "name": name, "cloud": config.name, "at": time.time(),
        "release": deployed["release"], "database": config.database,
        "etcd": etcd_facts, "files": files}, indent=1) + "\n")
    final = deploy_dir.backups / name
    partial.rename(final)
    for old in listed(deploy_dir)[:-config.backups_keep]:
        shutil.rmtree(old.path)
        ctx.say(f"removed backup {old.name} (keeping {config.backups_keep})")
    return Backup(name, final)


def _snapshot(ctx: Context, cluster: Any, target: Path) -> dict[str, Any]:
    """Stream a snapshot from one voting member that answers."""
    voting = [h for h in cluster.health() if h.answered and not h.learner]
    if not voting:
        raise DeployError("no etcd member answers: nothing to back up")
    member = next((h for h in voting if not h.leader), voting[0])  # spare the leader

    async def work() -> dict[str, Any]:
        one = Etcd([(member.address, CLIENT_PORT)], tls=cluster.credentials,
                   timeout=SNAPSHOT_TIMEOUT)
        try:
            stats = await one.prefix_stats(PREFIX + "/", 0)
            size = await one.snapshot(target)
        finally:
            await one.close()
        return {"member": member.name, "revision": stats.revision, "keys": stats.keys,
                "bytes": size}

    try:
        return asyncio.run(work())
    except EtcdUnavailable as exc:
        raise DeployError(f"etcd member {member.name} stopped answering: {exc}") from None


def _pack_config(deploy_dir: DeployDir, target: Path) -> None:
    with tarfile.open(target, "w:gz") as tar:
        for name in ("cloud.yml", DEPLOYED, "pki", "secrets"):
            path = deploy_dir.path / name
            if path.exists():
                tar.add(path, arcname=name)


def find(deploy_dir: DeployDir, which: str) -> Backup:
    path = Path(which)
    if not path.is_dir():
        path = deploy_dir.backups / which
    if not (path / MANIFEST).exists():
        names = ", ".join(b.name for b in listed(deploy_dir)) or "none"
        raise DeployError(f"no backup {which!r} (backups: {names})")
    return Backup(path.name, path.resolve())


def restore(ctx: Context, which: str) -> None:
    config = ctx.config()
    chosen = find(ctx.deploy_dir, which)
    manifest = chosen.manifest()
    for name, facts in manifest["files"].items():
        if _sha256(chosen.path / name) != facts["sha256"]:
            raise DeployError(f"{chosen.path / name} is damaged (its sha256 differs from "
                              "the manifest's)")
    if manifest["cloud"] != config.name:
        raise DeployError(f"backup {chosen.name} is of cloud {manifest['cloud']}, not "
                          f"{config.name}")
    if manifest["database"] != config.database:
        raise DeployError(f"backup {chosen.name} holds a {manifest['database']} database; "
                          f"this cloud uses {config.database}")
    # A new cluster of every etcd node of cloud.yml, all from the one snapshot.
    members = {n.name: peer_url(n.address) for n in config.etcd_nodes}
    plan = inventory.EtcdPlan(
        voting=tuple(members), running=tuple(members), initial_cluster=members,
        initial_state="new", token=f"sfcloud-{config.name}-restore-{secrets.token_hex(4)}")
    db_file = "portal.dump" if config.database == "postgresql" else "portal.sqlite3"
    ctx.say(f"restoring backup {chosen.name} (etcd revision {manifest['etcd']['revision']}, "
            f"{manifest['etcd']['keys']} keys)")
    # Every agent is stopped early in the play and started again late in it,
    # before the portals (which may take a while to answer): an agent that
    # registered after the play began is one that restarted.
    began = time.time()
    ctx.play(config, plan, "restore.yml", what="restore", extra_vars={
        "sfcloud_restore_snapshot": str(chosen.path / SNAPSHOT),
        "sfcloud_restore_database": str(chosen.path / db_file),
        "sfcloud_restore_stamp": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    })
    try:
        ctx.cluster(config).wait_alive(config.names, since=began)
    except Exception as exc:  # noqa: BLE001 - ClusterError, or etcd still electing
        raise DeployError(f"after the restore: {exc}") from None
