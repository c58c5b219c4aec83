"""First-run set-up: the system namespace, the admin user and the system API key.

Run at every start by ``make run``; it only creates what is missing. A secret
it generates is printed once and stored hashed, so it can't be shown again
(``manage.py changepassword admin`` or a new key replace a lost one).
SFCLOUD_ADMIN_PASSWORD and SFCLOUD_SYSTEM_KEY set them instead, for automation.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid as uuidlib
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from cloudstate.etcd import Compare, Delete, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.model import Artifact, Blob
from cloudstate.settings import read
from portal.accounts.keys import digest
from portal.accounts.models import SYSTEM_NAMESPACE, ApiKey, Membership, Namespace, Role
from portal.cloud import store

ADMIN_USER = "admin"
SYSTEM_KEY_NAME = "admin"


class Command(BaseCommand):
    help = "Create the system namespace, admin user and system key if missing."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--demo-image", type=Path,
                            help="register this qcow2 file as the shared image 'demo'")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        with transaction.atomic():
            namespace, _ = Namespace.objects.get_or_create(name=SYSTEM_NAMESPACE)
            password = self._admin(namespace)
            key = self._system_key(namespace)
        if password:
            self.stdout.write(f"admin-password: {password}")
        if key:
            self.stdout.write(f"system-key: {key}")
        if options["demo_image"]:
            created = asyncio.run(register_demo_image(options["demo_image"].resolve()))
            self.stdout.write(f"demo-image: {'registered' if created else 'already registered'}")

    def _admin(self, namespace: Namespace) -> str | None:
        """Returns a password only when one was generated now."""
        user_model = get_user_model()
        wanted = read("SFCLOUD_ADMIN_PASSWORD")
        user = user_model.objects.filter(username=ADMIN_USER).first()
        generated = None
        if user is None:
            generated = None if wanted else secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser(
                ADMIN_USER, email="", password=wanted or generated
            )
        elif wanted and not user.check_password(wanted):
            user.set_password(wanted)
            user.save(update_fields=["password"])
        Membership.objects.get_or_create(
            user=user, namespace=namespace, defaults={"role": Role.ADMIN}
        )
        return generated

    def _system_key(self, namespace: Namespace) -> str | None:
        wanted = read("SFCLOUD_SYSTEM_KEY")
        key = ApiKey.objects.filter(namespace=namespace, name=SYSTEM_KEY_NAME).first()
        if key is None:
            secret = wanted or secrets.token_urlsafe(32)
            ApiKey.objects.create(namespace=namespace, name=SYSTEM_KEY_NAME, digest=digest(secret))
            return None if wanted else secret
        if wanted and key.digest != digest(wanted):
            key.digest = digest(wanted)
            key.save(update_fields=["digest"])
        return None


async def register_demo_image(path: Path) -> bool:
    """Make the built guest image bootable as ``demo``: a shared artifact of
    the system namespace whose blob every node reads from the file itself.
    A rebuilt image (a new file) becomes its new version."""
    keys = Keys(settings.CLOUD.etcd_prefix)
    etcd = store.new_etcd()
    try:
        source_url = path.as_uri()
        existing = await _demo_artifact(etcd, keys)
        blob = Blob(uuid=str(uuidlib.uuid4()), namespace=SYSTEM_NAMESPACE, origin="file",
                    node=None, source_url=source_url)
        if existing is not None:
            artifact, revision = existing
            newest = artifact.versions.get(str(artifact.last_index))
            kv = await etcd.get(keys.blob(newest)) if newest else None
            if kv is not None and Blob.from_json(kv.value).source_url == source_url:
                return False
            old_index = keys.artifact_url(artifact.namespace, artifact.type, artifact.source_url)
            artifact = artifact.replace(source_url=source_url).with_version(blob.uuid)
            new_index = keys.artifact_url(artifact.namespace, artifact.type, source_url)
            await etcd.txn([Compare.unchanged_since(keys.artifact(artifact.uuid), revision)],
                           [Delete(old_index), Put(new_index, artifact.uuid),
                            Put(keys.artifact(artifact.uuid), artifact.to_json()),
                            Put(keys.blob(blob.uuid), blob.to_json())])
            return False
        artifact = Artifact(uuid=str(uuidlib.uuid4()), name="demo", namespace=SYSTEM_NAMESPACE,
                            source_url=source_url, shared=True).with_version(blob.uuid)
        index = keys.artifact_url(SYSTEM_NAMESPACE, artifact.type, source_url)
        result = await etcd.txn(
            [Compare.absent(index)],
            [Put(keys.artifact(artifact.uuid), artifact.to_json()), Put(index, artifact.uuid),
             Put(keys.blob(blob.uuid), blob.to_json())],
        )
        return result.succeeded
    finally:
        await etcd.close()


async def _demo_artifact(etcd: Etcd, keys: Keys) -> tuple[Artifact, int] | None:
    kvs, _ = await etcd.get_prefix(keys.artifacts)
    for kv in kvs:
        artifact = Artifact.from_json(kv.value)
        if artifact.name == "demo" and artifact.namespace == SYSTEM_NAMESPACE \
                and artifact.desired != "deleted":
            return artifact, kv.mod_revision
    return None
