"""The deploy directory: everything ``sfcloud-deploy`` keeps on the machine
it runs on (``/etc/sfcloud/deploy`` by default, or
``--dir``), private to root:

    cloud.yml        what the cloud is made of (deploy.cloudconfig)
    pki/             the cloud's CA (ca.key never leaves it), every part's
                     certificates, and the revocation list
    secrets/         made once, 0600: the cluster secret, Django's secret key,
                     the admin's password and the system key, the database's
                     and Redis' passwords
    releases/        builds of sfcloud to install on the nodes (deploy.release)
    backups/<time>/  etcd snapshots, the portal's database, this directory's
                     configuration and CA (deploy.backups)
    logs/            each run's Ansible output
    inventory.yml    the inventory of the latest run, made from cloud.yml
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cloudstate import privacy

DEFAULT_DIR = Path("/etc/sfcloud/deploy")

# name -> (length in bytes of randomness, what it is)
SECRETS = {
    "cluster.secret": "signs what the portals and agents tell each other",
    "secret_key": "Django's secret key, the same on every portal",
    "admin_password": "the portal's admin account",
    "system_key": "the system namespace's API key (sf-client, and this tool)",
    "database_password": "the portal's PostgreSQL account",
    "redis_password": "Redis, the portals' channel layer",
}


@dataclass(frozen=True)
class DeployDir:
    path: Path

    @property
    def pki(self) -> Path:
        return self.path / "pki"

    @property
    def secrets(self) -> Path:
        return self.path / "secrets"

    @property
    def releases(self) -> Path:
        return self.path / "releases"

    @property
    def backups(self) -> Path:
        return self.path / "backups"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def inventory(self) -> Path:
        return self.path / "inventory.yml"

    @property
    def ansible_home(self) -> Path:
        return self.path / "ansible"

    def prepare(self) -> None:
        """Make the directory and its parts, private; the secrets once."""
        old = os.umask(0o077)
        try:
            for directory in (self.path, self.secrets, self.releases, self.backups, self.logs,
                              self.ansible_home):
                privacy.private_dir(directory)
            for name in SECRETS:
                target = self.secrets / name
                if not target.exists():
                    # Letters and digits only: these end up in URLs and env files.
                    target.write_text(secrets.token_hex(24) + "\n")
        finally:
            os.umask(old)

    def secret(self, name: str) -> str:
        if name not in SECRETS:
            raise KeyError(name)
        return (self.secrets / name).read_text().strip()

    def secret_path(self, name: str) -> Path:
        if name not in SECRETS:
            raise KeyError(name)
        return self.secrets / name
