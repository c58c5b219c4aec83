"""``manage.py quotas``: every namespace's use against its quotas, counted
afresh from etcd (use is never stored, so there is no counter to drift),
with the namespaces over a limit (a limit lowered below what they hold:
only new things are refused) and the quota records etcd holds for
namespaces that no longer exist (a delete interrupted between the database
and etcd). ``--repair`` removes those; it exits 1 while any remain."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import Namespace
from portal.cloud import quotas, store


class Command(BaseCommand):
    help = "Show every namespace's use against its quotas; --repair removes orphaned records."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--repair", action="store_true",
                            help="remove the quota records of namespaces that no longer exist")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        orphans = asyncio.run(self._run(repair=options["repair"]))
        if orphans and not options["repair"]:
            raise CommandError(f"quota records of namespaces that no longer exist: "
                               f"{', '.join(orphans)} (manage.py quotas --repair removes them)")

    async def _run(self, *, repair: bool) -> list[str]:
        etcd, keys = store.etcd(), store.keys()
        try:
            names = await sync_to_async(
                lambda: sorted(Namespace.objects.values_list("name", flat=True)))()
            for name in names:
                lines = await quotas.count_lines(name)
                over = [line for line in lines if line.limit is not None
                        and line.used > line.limit]
                shown = ", ".join(f"{line.name} {line.used_shown}/{line.limit_shown}"
                                  for line in lines if line.limit is not None) or "no limits"
                self.stdout.write(f"{name}: {shown}")
                for line in over:
                    self.stdout.write(f"  over {line.name}: limit {line.limit_shown}, "
                                      f"in use {line.used_shown}")
            stored, _ = await etcd.get_prefix(keys.quotas)
            orphans = sorted({found for kv in stored
                              if (found := keys.uuid_of(kv.key, keys.quotas))} - set(names))
            for name in orphans:
                self.stdout.write(f"orphaned: the quotas of namespace {name}, which is gone"
                                  + ("; removed" if repair else ""))
                if repair:
                    await quotas.forget_namespace(name)
            return orphans
        finally:
            await etcd.close()
