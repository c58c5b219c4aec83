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

from cloudstate.etcd import Compare, Put
from cloudstate.keys import Keys
from cloudstate.model import Image
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
    """Make the built guest image bootable as ``demo`` (shared, owned by system)."""
    keys = Keys(settings.CLOUD.etcd_prefix)
    etcd = store.new_etcd()
    try:
        name_key = keys.image_name(SYSTEM_NAMESPACE, "demo")
        existing = await etcd.get(name_key)
        source_url = path.as_uri()
        if existing is not None:
            image_kv = await etcd.get(keys.image(existing.value.decode()))
            if image_kv is not None:
                image = Image.from_json(image_kv.value)
                if image.source_url != source_url:
                    # A rebuilt image lives in a new cache directory.
                    await etcd.put(keys.image(image.uuid), image.replace(
                        source_url=source_url, uuid=image.uuid).to_json())
                return False
        image = Image(uuid=str(uuidlib.uuid4()), name="demo", namespace=SYSTEM_NAMESPACE,
                      source_url=source_url, shared=True)
        result = await etcd.txn(
            [Compare.absent(name_key)],
            [Put(keys.image(image.uuid), image.to_json()), Put(name_key, image.uuid)],
        )
        return result.succeeded
    finally:
        await etcd.close()
